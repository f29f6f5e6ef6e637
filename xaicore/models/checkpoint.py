"""Reading a user's checkpoint safely and matching it to an architecture.

A checkpoint is a state dict saved with ``torch.save(model.state_dict(), path)`` (also accepted:
``{"state_dict": ...}`` or ``{"model": ...}`` wrappers, and the ``module.`` prefix that
``DataParallel`` adds). Everything else is refused with a :class:`CheckpointError` that says
why and what to do:

* the size is checked against a cap before anything is read;
* TorchScript archives are recognised from the zip listing and never opened;
* ``torch.load`` runs only with ``weights_only=True`` and ``map_location="cpu"``, with no
  fallback, so a pickle that would run code or rebuild a whole module is refused unrun;
* keys and shapes must match the architecture exactly, and a classifier of another size is
  explained as a wrong number of classes.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import torch
from torch import nn

from xaicore.errors import CheckpointError

DEFAULT_MAX_BYTES = 600 * 1024 * 1024
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")
SAVE_HINT = "Save the weights with torch.save(model.state_dict(), 'model.pt') and use that file."

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_MODULE_PREFIXES = ("torch.nn.modules.", "torch.nn.parallel.", "torchvision.models.", "torch.jit.")


def _source_name(source: bytes | str | Path) -> str:
    return "the uploaded file" if isinstance(source, (bytes, bytearray)) else f"the file {Path(source).name}"


def _size_of(source: bytes | str | Path) -> int:
    if isinstance(source, (bytes, bytearray)):
        return len(source)
    try:
        return os.stat(source).st_size
    except OSError as exc:
        raise CheckpointError(f"There is no readable file at {source}.") from exc


def _check_size(source: bytes | str | Path, max_bytes: int) -> None:
    size = _size_of(source)
    if size == 0:
        raise CheckpointError(f"{_source_name(source).capitalize()} is empty; it holds no weights.")
    if size > max_bytes:
        raise CheckpointError(
            f"{_source_name(source).capitalize()} is {_human(size)}, over the {_human(max_bytes)} limit for "
            "checkpoints; use a smaller model or raise the limit."
        )


def _human(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024**2:
        return f"{size / 1024:.1f} KB"
    return f"{size / 1024**2:.1f} MB"


def _is_torchscript(stream: IO[bytes]) -> bool:
    """Whether ``stream`` is a TorchScript archive (a zip with ``code/`` or ``constants.pkl``)."""
    stream.seek(0)
    try:
        if not zipfile.is_zipfile(stream):
            return False
        stream.seek(0)
        with zipfile.ZipFile(stream) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    finally:
        stream.seek(0)
    return any("/code/" in n or n.endswith("/constants.pkl") or n == "constants.pkl" for n in names)


def _refusal(exc: pickle.UnpicklingError) -> CheckpointError:
    found = _GLOBAL.findall(str(exc))
    if not found:
        return CheckpointError(
            "This file is not a plain PyTorch state dict, or it is damaged: its content was refused by the "
            f"safe loader and nothing in it was run. {SAVE_HINT}"
        )
    name = found[0]
    if name.startswith(_MODULE_PREFIXES):
        return CheckpointError(
            f"This file holds a whole pickled model ({name}), not a state dict; loading pickled models "
            f"can run arbitrary code, so it was refused. {SAVE_HINT}"
        )
    return CheckpointError(
        f"This file contains Python objects that could run code when loaded ({name}); it was refused "
        f"and nothing in it was run. {SAVE_HINT}"
    )


def _torch_load(stream: IO[bytes], path: str | None = None) -> object:
    """``torch.load`` with weights only; from a ``path`` in torch's zip format, the tensors are
    mapped from the file (``mmap``) rather than read into memory first."""
    try:
        if path is not None:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return torch.load(stream, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _refusal(exc) from exc
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError, KeyError, IndexError) as exc:
        raise CheckpointError(
            "This file is damaged or incomplete (for example a truncated download), or it is not a "
            f"PyTorch checkpoint: {str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}. "
            "Save or copy it again."
        ) from exc


def _is_tensor_map(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def unwrap_state_dict(obj: object) -> dict[str, torch.Tensor]:
    """The state dict inside ``obj``: as is, or under a wrapper key, without a ``module.`` prefix."""
    for _ in range(2):  # a wrapper may itself be wrapped once ({"model": {"state_dict": ...}})
        if _is_tensor_map(obj) or not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not _is_tensor_map(obj):
        raise CheckpointError(
            "This file does not contain a state dict (a mapping from layer names to tensors). " + SAVE_HINT
        )
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _check_finite(state: Mapping[str, torch.Tensor]) -> None:
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"The weights {key!r} contain NaN or infinite values; the model cannot work.")


def read_state_dict(source: bytes | str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, torch.Tensor]:
    """Read a state dict from bytes or a file, safely.

    Parameters
    ----------
    source:
        The file's content, or its path.
    max_bytes:
        Size cap, checked before reading (default 600 MB).

    Raises
    ------
    CheckpointError
        Over the cap, empty, damaged, TorchScript, a pickled module or other code-bearing
        pickle, no state dict inside, or non-finite weights.
    """
    _check_size(source, max_bytes)
    with _open(source) as stream:
        if _is_torchscript(stream):
            raise CheckpointError(
                "This file is a TorchScript archive; it carries code and is not loaded here. " + SAVE_HINT
            )
        mapped = None if isinstance(source, (bytes, bytearray)) or not zipfile.is_zipfile(stream) else str(source)
        stream.seek(0)
        loaded = _torch_load(stream, mapped)
    state = unwrap_state_dict(loaded)
    _check_finite(state)
    return state


def _open(source: bytes | str | Path) -> IO[bytes]:
    if isinstance(source, (bytes, bytearray)):
        return io.BytesIO(source)
    try:
        return open(source, "rb")  # noqa: SIM115 - closed by the caller's with-block
    except OSError as exc:
        raise CheckpointError(f"There is no readable file at {source}.") from exc


def _few(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def resolve_num_classes(
    state: Mapping[str, torch.Tensor], *, head_key: str | None, num_classes: int | None, arch: str
) -> int | None:
    """The class count: ``num_classes`` checked against the checkpoint's classifier, or read from it.

    Raises :class:`CheckpointError` when the classifier has a different number of outputs
    than ``num_classes``. Returns ``None`` when neither says (the architecture's default).
    """
    head = state.get(head_key) if head_key else None
    found = int(head.shape[0]) if head is not None and head.ndim >= 1 else None
    if num_classes is None:
        return found
    if found is not None and found != int(num_classes):
        layer = head_key.rsplit(".", 1)[0]
        raise CheckpointError(
            f"The checkpoint's classifier ({layer}) has {found} outputs, but the model was set up for "
            f"{num_classes} classes. Set the number of classes to {found}, or check that this is the "
            f"{arch} checkpoint you meant."
        )
    return int(num_classes)


def load_into(net: nn.Module, state: Mapping[str, torch.Tensor], *, arch: str) -> None:
    """Load ``state`` into ``net`` with strict keys and shapes.

    Raises :class:`CheckpointError` naming the first few missing, unexpected and mis-shaped
    keys. BatchNorm's ``num_batches_tracked`` counters may be absent (older checkpoints).
    """
    expected = net.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} {tuple(state[k].shape)} instead of {tuple(expected[k].shape)}"
        for k in state
        if k in expected and state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_few(unexpected)}")
    if misshaped:
        problems.append(f"wrong shapes for {_few(misshaped)}")
    if problems:
        raise CheckpointError(
            f"This state dict does not fit the {arch} architecture: {'; '.join(problems)}. "
            "Check the architecture and the number of classes you chose."
        )
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"This state dict does not fit the {arch} architecture: {exc}") from exc
