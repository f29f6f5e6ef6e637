"""LRP's conservation on the default model: how far the relevance of 20 generated images is from
f(x) (the predicted class's logit) with biases excluded and included, and the share of f(x) the
biases absorb. Figures for docs/benchmarks.md; run from the repository root:

    python benchmarks/lrp_conservation.py
"""

from __future__ import annotations

import json
import platform

import torch

from xaicore.data.shapes import generate
from xaicore.explainers import lrp
from xaicore.models.default import load_default_bundle

IMAGES, SEED = 20, 3


def _summary(values: torch.Tensor) -> dict[str, float]:
    q = torch.quantile(values.double(), torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    return {"median": float(q[1]), "q1": float(q[0]), "q3": float(q[2]), "max": float(values.max())}


def main() -> None:
    bundle = load_default_bundle(device="cpu")
    pictures, _ = generate(IMAGES, seed=SEED)
    x = bundle.to_input(pictures)
    target = bundle.logits(x).argmax(1)
    figures: dict[str, object] = {"images": IMAGES, "seed": SEED, "device": platform.processor() or "cpu"}
    for composite in lrp.COMPOSITES:
        for biases in lrp.BIASES:
            out = lrp.lrp(bundle.model, x, target, composite=composite, biases=biases, epsilon=1e-6, gamma=0.25)
            entry = {"relative_error": _summary((out.delta / out.expected).abs())}
            if "bias_relevance" in out.details:
                entry["bias_share"] = _summary(out.details["bias_relevance"] / out.expected)
            figures[f"{composite}/{biases}"] = entry
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
