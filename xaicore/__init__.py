"""xaicore: explain image classifiers, check the explanations, measure them.

Every analysis is one call on a :class:`ModelBundle` (see ``docs/ARCHITECTURE.md``)::

    bundle = xaicore.load_model("default")
    image = xaicore.load_image("cat.png")
    result = xaicore.explain(bundle, image, methods=["saliency", "gradcam"])

The public names below are imported lazily so that ``import xaicore`` stays cheap.
"""

from xaicore.runtime.lazy import lazy_exports

__version__ = "0.2.0"

_NAMES = {
    # models and images
    "ModelBundle": "xaicore.models.bundle",
    "load_model": "xaicore.models.loading",
    "list_models": "xaicore.models.loading",
    "load_image": "xaicore.data.images",
    "load_image_set": "xaicore.data.imagesets",
    # explanations
    "explain": "xaicore.explainers.api",
    "ExplainResult": "xaicore.explainers.results",
    "list_methods": "xaicore.explainers.registry",
    "get_method": "xaicore.explainers.registry",
    # analyses: one run function each
    "run_sanity": "xaicore.checks.sanity",
    "compare_classes": "xaicore.checks.discriminative",
    "insertion_deletion": "xaicore.metrics.faithfulness",
    "localization_scores": "xaicore.metrics.localization",
    "compare_maps": "xaicore.metrics.similarity",
    "ax_co_scores": "xaicore.confidence.co_ax",
    "co_scores": "xaicore.confidence.co_sets",
    "run_gax": "xaicore.confidence.gax",
    "evaluate": "xaicore.evaluation.rows",
    "evaluate_in_folder": "xaicore.evaluation.store",
    "build_report": "xaicore.evaluation.report",
    # errors
    "XaiError": "xaicore.errors",
    "ImageLoadError": "xaicore.errors",
    "CheckpointError": "xaicore.errors",
    "ModelNotAvailable": "xaicore.errors",
    "MethodUnavailable": "xaicore.errors",
    "ParameterError": "xaicore.errors",
}

__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
