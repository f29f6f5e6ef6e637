"""DeepLift's completeness before and after the max-pool rewrite, and what the rewrite costs.

Prints, for the default model on 20 generated images (black and blurred baselines) and for
ResNet-18 with random weights: the relative completeness error |sum - gap| / |gap| of captum's
DeepLift (and DeepLiftShap) on the model as it is ("captum rule") and on the copy whose
max-poolings are ReLU networks ("rewrite"), and the time of one DeepLift call on each.

    python benchmarks/deeplift_completeness.py [--images 20] [--references 8] [--resnet-size 112] [--resnet-images 10]
        [--resnet-references 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from captum.attr import DeepLift

from xaicore.data.shapes import generate
from xaicore.explainers.baselines import jittered_references, make_baseline
from xaicore.models.default import load_default_bundle
from xaicore.models.loading import load_model
from xaicore.models.rewrite import relu_max_pool_copy


def _errors(model, x, refs, target, *, chunk: int = 32) -> list[float]:
    """|mean pair delta| / |f(x) - mean f(ref)| per image, for refs (K, N, 3, H, W): DeepLift
    with K = 1, DeepLiftShap's figure (its delta is the mean of the pairs' deltas) with K > 1."""
    k, n = refs.shape[:2]
    xs, rs, ts = x.repeat(k, 1, 1, 1), refs.flatten(0, 1), target.repeat(k)
    deltas = []
    for start in range(0, k * n, chunk):
        part = slice(start, start + chunk)
        _, delta = DeepLift(model).attribute(
            xs[part].clone().requires_grad_(True), baselines=rs[part], target=ts[part], return_convergence_delta=True
        )
        deltas.append(delta.detach())
    with torch.no_grad():
        rows = torch.arange(n)
        gap = model(x)[rows, target] - model(rs).view(k, n, -1)[:, rows, target].mean(0)
    mean_delta = torch.cat(deltas).view(k, n).mean(0)
    return (mean_delta.abs() / gap.abs()).tolist()


def _summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.2e}  max {max(values):.2e}"


def _best_times(fns: dict, repeats: int) -> dict[str, float]:
    """The fastest of ``repeats`` timings of each function, the functions taking turns."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for label, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[label] = min(best[label], time.perf_counter() - start)
    return best


def report(name: str, model, x, target, baseline_kinds, *, shap_refs: int, repeats: int, errors: bool = True) -> None:
    start = time.perf_counter()
    exact = relu_max_pool_copy(model, x[:1])
    made = time.perf_counter() - start
    for kind in baseline_kinds if errors else ():
        b = make_baseline(kind, x, generator=torch.Generator().manual_seed(0))
        refs = jittered_references(b, count=shap_refs, noise=0.1, generator=torch.Generator().manual_seed(1))
        for label, net in (("captum rule", model), ("rewrite", exact)):
            dl = _errors(net, x, b.unsqueeze(0), target)
            ds = _errors(net, x, refs, target)
            shap = f"DeepLiftShap ({shap_refs} refs) {_summary(ds)}"
            print(f"{name:9s} {kind:5s} {label:11s} DeepLift {_summary(dl)} | {shap}")
    b = make_baseline("black", x, generator=torch.Generator())
    times = _best_times(
        {
            label: lambda net=net: DeepLift(net).attribute(x.clone().requires_grad_(True), baselines=b, target=target)
            for label, net in (("captum rule", model), ("rewrite", exact))
        },
        repeats,
    )
    print(
        f"{name:9s} one DeepLift call on {x.shape[0]} images (best of {repeats}): captum rule "
        f"{times['captum rule']:.3f} s, rewrite {times['rewrite']:.3f} s, ratio "
        f"{times['rewrite'] / times['captum rule']:.2f}x; making and checking the copy once {made:.3f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--resnet-size", type=int, default=112)
    parser.add_argument("--resnet-images", type=int, default=10)
    parser.add_argument("--references", type=int, default=8)
    parser.add_argument("--resnet-references", type=int, default=4)
    parser.add_argument("--timing-only", action="store_true", help="skip the completeness figures")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    bundle = load_default_bundle(device="cpu")
    pictures, _ = generate(args.images, seed=3, size=max(bundle.input_size))
    x = torch.cat([bundle.to_input(p) for p in pictures])
    with torch.no_grad():
        target = bundle.model(x).argmax(1)
    errors = not args.timing_only
    report("default", bundle.model, x, target, ("black", "blur"), shap_refs=args.references, repeats=7, errors=errors)

    resnet = load_model("resnet18", weights=None, device="cpu", input_size=args.resnet_size)
    pictures, _ = generate(args.resnet_images, seed=4, size=args.resnet_size)
    x = torch.from_numpy(pictures).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        target = resnet.model(x).argmax(1)
    report("resnet18", resnet.model, x, target, ("black",), shap_refs=args.resnet_references, repeats=3, errors=errors)


if __name__ == "__main__":
    main()
