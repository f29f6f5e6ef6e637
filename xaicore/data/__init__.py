"""Images in: files and uploads, image sets, the generated shapes and scenes, the bundled samples.

The names below are imported lazily, from the module named beside each.
"""

from xaicore.runtime.lazy import lazy_exports

_NAMES = {
    "LoadedImage": "xaicore.data.images",
    "load_image": "xaicore.data.images",
    "load_mask": "xaicore.data.images",
    "ImageItem": "xaicore.data.imagesets",
    "ImageSet": "xaicore.data.imagesets",
    "load_image_set": "xaicore.data.imagesets",
    "generated_test_set": "xaicore.data.imagesets",
    "Scene": "xaicore.data.shapes",
    "generate": "xaicore.data.shapes",
    "generate_scene": "xaicore.data.shapes",
    "generate_scenes": "xaicore.data.shapes",
    "Sample": "xaicore.data.samples",
    "list_samples": "xaicore.data.samples",
    "load_sample": "xaicore.data.samples",
    "parse_data": "xaicore.data.evalsets",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
