"""Pictures of results: heatmap tiles with colour bars, the model-input view, GAX views.

The names below are imported lazily, from the module named beside each.
"""

from xaicore.runtime.lazy import lazy_exports

_NAMES = {
    "render_map": "xaicore.render.heatmaps",
    "heatmap_tile": "xaicore.render.heatmaps",
    "grid_image": "xaicore.render.heatmaps",
    "colorbar": "xaicore.render.heatmaps",
    "InputView": "xaicore.render.input_view",
    "input_view": "xaicore.render.input_view",
    "channel_tiles": "xaicore.render.gax_view",
    "evolution_gif": "xaicore.render.gax_view",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
