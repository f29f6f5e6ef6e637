"""DeepLift's completeness before and after the max-pool rewrite, and what the rewrite costs.

Prints, for the default model on 20 generated images (black and blurred baselines) and for
ResNet-18 with random weights: the relative completeness error |sum - gap| / |gap| of captum's
DeepLift (and DeepLiftShap) on the model as it is ("captum rule") and on the copy whose
max-poolings are ReLU networks ("rewrite"), and the time of one DeepLift call on each.

    python benchmarks/deeplift_completeness.py [--resnet-size 224] [--images 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from captum.attr import DeepLift, DeepLiftShap

from xaicore.data.shapes import generate
from xaicore.explainers.baselines import jittered_references, make_baseline
from xaicore.models.default import load_default_bundle
from xaicore.models.loading import load_model
from xaicore.models.rewrite import relu_max_pool_copy


def _errors(model, x, baselines, target, shap: bool) -> list[float]:
    out = []
    for i in range(x.shape[0]):
        xi, ti = x[i : i + 1], int(target[i])
        if shap:
            refs = baselines[:, i]
            _, delta = DeepLiftShap(model).attribute(xi, baselines=refs, target=ti, return_convergence_delta=True)
            with torch.no_grad():
                gap = model(xi)[0, ti] - model(refs)[:, ti].mean()
            delta = delta.mean()
        else:
            bi = baselines[i : i + 1]
            _, delta = DeepLift(model).attribute(xi, baselines=bi, target=ti, return_convergence_delta=True)
            with torch.no_grad():
                gap = model(xi)[0, ti] - model(bi)[0, ti]
        out.append(abs(float(delta)) / abs(float(gap)))
    return out


def _summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.2e}  max {max(values):.2e}"


def _best_time(fn, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def report(name: str, model, x, target, baseline_kinds, *, shap_refs: int, repeats: int) -> None:
    exact = relu_max_pool_copy(model, x[:2])
    for kind in baseline_kinds:
        b = make_baseline(kind, x, generator=torch.Generator().manual_seed(0))
        refs = jittered_references(b, count=shap_refs, noise=0.1, generator=torch.Generator().manual_seed(1))
        for label, net in (("captum rule", model), ("rewrite", exact)):
            dl = _errors(net, x, b, target, shap=False)
            ds = _errors(net, x, refs, target, shap=True)
            print(f"{name:9s} {kind:5s} {label:11s} DeepLift {_summary(dl)} | DeepLiftShap {_summary(ds)}")
    b = make_baseline("black", x, generator=torch.Generator())
    times = {
        label: _best_time(lambda net=net: DeepLift(net).attribute(x, baselines=b, target=target), repeats)
        for label, net in (("captum rule", model), ("rewrite", exact))
    }
    print(
        f"{name:9s} one DeepLift call on {x.shape[0]} images: captum rule {times['captum rule']:.3f} s, "
        f"rewrite {times['rewrite']:.3f} s, ratio {times['rewrite'] / times['captum rule']:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--resnet-size", type=int, default=224)
    parser.add_argument("--resnet-images", type=int, default=20)
    parser.add_argument("--references", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)

    bundle = load_default_bundle(device="cpu")
    pictures, _ = generate(args.images, seed=3, size=max(bundle.input_size))
    x = torch.cat([bundle.to_input(p) for p in pictures])
    with torch.no_grad():
        target = bundle.model(x).argmax(1)
    report("default", bundle.model, x, target, ("black", "blur"), shap_refs=args.references, repeats=5)

    resnet = load_model("resnet18", weights=None, device="cpu", input_size=args.resnet_size)
    pictures, _ = generate(args.resnet_images, seed=4, size=args.resnet_size)
    x = torch.from_numpy(pictures).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        target = resnet.model(x).argmax(1)
    report("resnet18", resnet.model, x, target, ("black",), shap_refs=args.references, repeats=2)


if __name__ == "__main__":
    main()
