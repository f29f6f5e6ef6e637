"""``xai bench precision``: the bf16 mode against float32, on a CUDA GPU.

For every method available on the model, on one bench image: its time in float32 and in the
bf16 mode (:meth:`~xaicore.models.bundle.ModelBundle.with_precision`), and the SSIM between the
two maps (absolute channel sum scaled to [0, 1], scikit-image's default settings). A method
qualifies for the bf16 mode when that SSIM is at least 0.99. Also: the model's forward and
forward+backward time at the bench batch in both precisions, and both curves of the
insertion/deletion workload for the qualifying methods' maps with the largest AUC difference.
On a CPU the workload reports that it was skipped (the mode needs CUDA).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from xaicore.bench.common import BenchContext, Workload, best_time, pass_time
from xaicore.bench.explain import bench_image
from xaicore.explainers.api import attribute
from xaicore.metrics.similarity import prepare_maps, ssim_batch

MIN_SSIM = 0.99


def run(ctx: BenchContext) -> dict[str, Any]:
    if not ctx.gpu:
        return {"skipped": "the bf16 mode needs a CUDA GPU"}
    from xaicore.metrics.faithfulness import insertion_deletion

    full = ctx.bundle.with_precision("float32")
    half = ctx.bundle.with_precision("bf16")
    image = bench_image(full)
    x = full.to_input(image)
    target = full.logits(x).argmax(1)
    names = full.available_methods()
    methods: dict[str, Any] = {}
    maps32: dict[str, torch.Tensor] = {}
    maps16: dict[str, torch.Tensor] = {}
    for name in names:
        a = attribute(full, x, method=name, target=target).values
        b = attribute(half, x, method=name, target=target).values
        pair = prepare_maps(torch.cat([a, b]).float(), normalization="abs")
        ssim = float(ssim_batch(pair[:1], pair[1:], data_range=1.0)[0])
        t32 = best_time(partial(attribute, full, x, method=name, target=target), device=ctx.device, repeats=ctx.repeats)
        t16 = best_time(partial(attribute, half, x, method=name, target=target), device=ctx.device, repeats=ctx.repeats)
        methods[name] = {
            "float32_s": t32,
            "bf16_s": t16,
            "speedup": t32 / t16,
            "ssim": ssim,
            "qualifies": ssim >= MIN_SSIM,
        }
        if ssim >= MIN_SSIM:
            maps32[name], maps16[name] = a, b
    floor32 = pass_time(full, batch=ctx.batch, repeats=ctx.repeats)
    floor16 = pass_time(half, batch=ctx.batch, repeats=ctx.repeats)
    figures: dict[str, Any] = {
        "methods": methods,
        "qualifying": ", ".join(n for n, m in methods.items() if m["qualifies"]),
        f"floor_batch_{ctx.batch}": {
            "forward_backward_speedup": floor32["forward_backward_s"] / floor16["forward_backward_s"],
            "forward_speedup": floor32["forward_s"] / floor16["forward_s"],
        },
    }
    if maps32:
        tgt = int(target[0])
        r32 = insertion_deletion(full, x, maps32, target=tgt)
        r16 = insertion_deletion(half, x, maps16, target=tgt)
        f32 = best_time(lambda: insertion_deletion(full, x, maps32, target=tgt), device=ctx.device, repeats=ctx.repeats)
        f16 = best_time(lambda: insertion_deletion(half, x, maps16, target=tgt), device=ctx.device, repeats=ctx.repeats)
        worst = max(
            max(
                abs(float(a.insertion_auc[0]) - float(b.insertion_auc[0])),
                abs(float(a.deletion_auc[0]) - float(b.deletion_auc[0])),
            )
            for a, b in zip(r32.curves, r16.curves)
        )
        figures["faithfulness_qualifying_maps"] = {
            "float32_s": f32,
            "bf16_s": f16,
            "speedup": f32 / f16,
            "max_auc_difference": worst,
        }
    return figures


WORKLOAD = Workload(
    name="precision",
    description="the bf16 mode against float32: time and SSIM of every method's map (CUDA only)",
    run=run,
)
