"""Helpers shared by the ``xai`` sub-commands: reading an image argument and method lists."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from xaicore.models.bundle import ModelBundle


@dataclass(frozen=True)
class ImageArg:
    """An image named on the command line, with its ground-truth masks when it has any."""

    array: np.ndarray
    name: str
    masks: np.ndarray | None = None
    mask_labels: tuple[int, ...] | None = None


def read_image_arg(source: str) -> ImageArg:
    """Load ``source``: an image file when such a file exists, otherwise a sample by name."""
    from xaicore.data.images import load_image
    from xaicore.data.samples import list_samples, load_sample
    from xaicore.errors import ImageLoadError

    path = Path(source)
    if path.is_file():
        from xaicore.data.dicom import is_dicom, load_dicom_image

        with path.open("rb") as handle:
            head = handle.read(132)
        loaded = load_dicom_image(path) if is_dicom(head) else load_image(path)  # DICOM: the file's own window
        return ImageArg(array=loaded.array, name=path.name)
    if source in list_samples():
        sample = load_sample(source)
        masks = sample.masks if sample.masks is not None and sample.mask_labels else None
        return ImageArg(
            array=sample.image, name=source, masks=masks, mask_labels=sample.mask_labels if masks is not None else None
        )
    raise ImageLoadError(f"{source!r} is neither an image file nor a sample name; check the path.")


def parse_methods(text: str) -> list[str]:
    """Method names from a comma-separated list; ``all`` means every registered method."""
    from xaicore.errors import ParameterError
    from xaicore.explainers.registry import list_methods

    if text.strip().lower() == "all":
        return list_methods()
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ParameterError("--methods needs at least one method name.")
    return names


def methods_for(text: str | None, bundle: ModelBundle) -> list[str]:
    """Method names from ``--methods``; ``all`` leaves out the ones this model cannot run.

    Without ``--methods`` (``None``): the registry's single-pass methods.
    """
    if text is None:
        from xaicore.explainers.registry import single_pass_methods

        return single_pass_methods()
    if text.strip().lower() == "all":
        return bundle.available_methods()
    return parse_methods(text)


def add_layer_option(parser) -> None:
    """``--layer``: the layer the CAM methods use instead of the model's default."""
    parser.add_argument(
        "--layer",
        default=None,
        metavar="NAME",
        help="layer of the CAM methods (Grad-CAM, Score-CAM, ...), a qualified module name such as "
        "net.features.conv3 (default: the model's; `xai models --show MODEL` lists the choices)",
    )


def with_layer_arg(bundle: ModelBundle, args) -> ModelBundle:
    """``bundle`` with the CAM layer ``--layer`` names (unchanged without it); a name that is not
    one of ``bundle.cam_layers()`` is refused with the choices listed."""
    return bundle.with_cam_layer(getattr(args, "layer", None))


# --- model options -------------------------------------------------------------------------

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")


def add_model_options(parser, *, model_help: str | None = None) -> None:
    """``--model``, ``--random-weights`` and the checkpoint options the dashboard's sidebar has."""
    parser.add_argument(
        "--model",
        default="default",
        help=model_help
        or "'default' (the embedded model), a torchvision name such as resnet18, or the path of a "
        "state dict (.pt, .pth or .safetensors; give --arch)",
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="torchvision models: reproducible random weights instead of the cached pretrained ones",
    )
    group = parser.add_argument_group(
        "checkpoint options", "for --model PATH of a state dict (the same settings as the dashboard's sidebar)"
    )
    group.add_argument("--arch", default=None, help="torchvision architecture of the state dict, e.g. resnet18")
    group.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="number of classes (default: read from the state dict's classifier)",
    )
    group.add_argument(
        "--labels", default=None, help="class names: a text file with one per line, or a comma-separated list"
    )
    group.add_argument("--input-size", default=None, help="input side in pixels, or HxW such as 224x224 (default 224)")
    group.add_argument("--mean", default=None, help="per-channel mean, e.g. 0.485,0.456,0.406 (default ImageNet's)")
    group.add_argument("--std", default=None, help="per-channel std, e.g. 0.229,0.224,0.225 (default ImageNet's)")
    group.add_argument(
        "--grayscale", action="store_true", help="the model wants grayscale input (copied to 3 channels)"
    )


def parse_numbers(text: str, *, option: str, count: int = 3) -> tuple[float, ...]:
    """``count`` finite numbers from ``"0.5,0.5,0.5"`` (commas, semicolons or spaces)."""
    import math

    from xaicore.errors import ParameterError

    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError as exc:
        raise ParameterError(f"{option} must be {count} numbers separated by commas, like 0.5,0.5,0.5.") from exc
    if len(values) != count:
        raise ParameterError(f"{option} must be {count} numbers separated by commas; got {len(values)}.")
    if not all(math.isfinite(v) for v in values):
        raise ParameterError(f"{option} must be finite numbers, not {text!r}.")
    return values


def parse_labels(text: str) -> tuple[str, ...]:
    """Class names from a text file (one per line) when ``text`` names one, else a comma list."""
    from xaicore.errors import ParameterError

    path = Path(text).expanduser()
    if path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ParameterError(f"The labels file {text!r} cannot be read as UTF-8 text.") from exc
        names = [line.strip() for line in lines if line.strip()]
    else:
        names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ParameterError(f"--labels {text!r} holds no class names; give a file with one per line or a comma list.")
    return tuple(names)


def parse_input_size(text: str) -> int | tuple[int, int]:
    """``"224"`` -> 224, ``"240x320"`` -> (240, 320)."""
    from xaicore.errors import ParameterError

    parts = text.lower().replace("×", "x").split("x")
    if not 1 <= len(parts) <= 2 or not all(p.strip().isdigit() for p in parts):
        raise ParameterError(f"--input-size must be one whole number of pixels or HxW such as 224x224, not {text!r}.")
    sizes = [int(p) for p in parts]
    return sizes[0] if len(sizes) == 1 else (sizes[0], sizes[1])


def model_options(args) -> dict:
    """The keyword arguments of :func:`xaicore.models.loading.load_model` that ``args`` asks for.

    Raises :class:`~xaicore.errors.ParameterError` for options that do not apply to the model:
    ``--random-weights`` to the default model or a checkpoint, ``--arch`` to anything but a
    checkpoint.
    """
    from xaicore.errors import ParameterError
    from xaicore.models import zoo

    name = str(args.model).strip()
    is_default = name.lower() == "default"
    is_torchvision = not is_default and name.lower() in zoo.torchvision_names()
    path = Path(name).expanduser()
    is_checkpoint = (
        not is_default and not is_torchvision and (path.is_file() or path.suffix.lower() in CHECKPOINT_SUFFIXES)
    )
    options: dict = {}
    if getattr(args, "random_weights", False):
        if not is_torchvision:
            what = (
                "the embedded default model has only its trained weights"
                if is_default
                else ("a checkpoint brings its own weights")
            )
            raise ParameterError(f"--random-weights applies to torchvision models such as resnet18; {what}.")
        options["weights"] = None
    if getattr(args, "arch", None) is not None:
        if is_default or is_torchvision:
            raise ParameterError(
                f"--arch names the architecture of a state dict file; {name!r} is a model name, not a file."
            )
        options["arch"] = args.arch
    if is_checkpoint and getattr(args, "arch", None) is None:
        raise ParameterError(
            f"{name!r} is not a model name, so it is read as a state dict file; say which architecture it is "
            "for with --arch (e.g. --arch resnet18), or use --model default or a torchvision name."
        )
    if getattr(args, "num_classes", None) is not None:
        options["num_classes"] = args.num_classes
    if getattr(args, "labels", None) is not None:
        options["class_names"] = parse_labels(args.labels)
    if getattr(args, "input_size", None) is not None:
        options["input_size"] = parse_input_size(args.input_size)
    if getattr(args, "mean", None) is not None:
        options["mean"] = parse_numbers(args.mean, option="--mean")
    if getattr(args, "std", None) is not None:
        options["std"] = parse_numbers(args.std, option="--std")
        if any(v <= 0 for v in options["std"]):
            raise ParameterError(f"--std must be positive numbers, not {args.std!r}.")
    if getattr(args, "grayscale", False):
        options["grayscale"] = True
    return options


def load_model_arg(args, *, device=None):
    """The model ``args`` names, loaded with its options (see :func:`add_model_options`)."""
    from xaicore.models import loading

    return loading.load_model(args.model, device=device, **model_options(args))


def check_out_dir(path: Path | None) -> None:
    """Refuse an output folder that is an existing file (or lies under one), before any work."""
    from xaicore.errors import ParameterError

    if path is None:
        return
    path = Path(path)
    for place in (path, *path.parents):
        if place.exists():
            if not place.is_dir():
                which = "is" if place == path else f"lies under {str(place)!r}, which is"
                raise ParameterError(
                    f"The output folder {str(path)!r} {which} an existing file; give a folder name with --out "
                    "(it is created when missing)."
                )
            return


def check_out_file(path: Path | None) -> None:
    """Refuse an output file that is an existing folder (or lies under a file), before any work."""
    from xaicore.errors import ParameterError

    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise ParameterError(f"--out {str(path)!r} is a folder; give the name of the JSON file to write.")
    check_out_dir(path.parent)
