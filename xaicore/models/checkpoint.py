"""Reading a user's checkpoint safely and matching it to an architecture.

A checkpoint is a state dict saved with ``torch.save(model.state_dict(), path)`` (also accepted:
``{"state_dict": ...}`` or ``{"model": ...}`` wrappers, and the ``module.`` prefix that
``DataParallel`` adds). Everything else is refused with a :class:`CheckpointError` that says
why and what to do:

* the size is checked against a cap before anything is read;
* TorchScript archives are recognised from the zip listing and never opened;
* ``torch.load`` runs only with ``weights_only=True`` and ``map_location="cpu"``, with no
  fallback, so a pickle that would run code or rebuild a whole module is refused unrun;
* the number of entries is capped before the tensors are rebuilt (from the zip's directory
  and the size of its pickle, or the safetensors header);
* every tensor's layout is checked before any operation on its values: dense and strided (no
  sparse or quantized tensors), no stride 0 and no overlapping views, inside its storage, so a
  tiny file cannot stand for a huge array;
* ``.safetensors`` files (no pickle at all) are read with the ``safetensors`` package, recognised
  by their content;
* keys and shapes must match the architecture exactly, compared with the architecture's
  state dict described on the meta device before the network is built, and a classifier of
  another size is explained as a wrong number of classes.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import re
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Protocol, TypeGuard

import torch
from torch import nn

from xaicore.errors import CheckpointError

DEFAULT_MAX_BYTES = 600 * 1024 * 1024
# The largest torchvision classifier state dict (EfficientNetV2-L) has 1,548 entries.
MAX_KEYS = 5000
# A state dict's pickle takes about 100-200 bytes per entry; far more means something else.
MAX_PICKLE_BYTES = 4 * 1024 * 1024
MAX_SAFETENSORS_HEADER = 4 * 1024 * 1024
_VALUE_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_COUNT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)
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
    except (
        RuntimeError,
        EOFError,
        ValueError,
        zipfile.BadZipFile,
        OSError,
        KeyError,
        IndexError,
        struct.error,
        TypeError,
        AttributeError,
        OverflowError,
        UnicodeDecodeError,
        AssertionError,  # torch's legacy reader asserts on a storage key that is not in the file
    ) as exc:
        raise CheckpointError(
            "This file is damaged or incomplete (for example a truncated download), or it is not a "
            f"PyTorch checkpoint: {str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}. "
            "Save or copy it again."
        ) from exc


def _is_tensor_map(obj: object) -> TypeGuard[Mapping[str, torch.Tensor]]:
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
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def check_finite(state: Mapping[str, torch.Tensor]) -> None:
    """Refuse NaN or infinite weights (call after :func:`check_layout`, which bounds the cost)."""
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
    state = read_unchecked_values(source, max_bytes=max_bytes)
    check_finite(state)
    return state


def read_unchecked_values(source: bytes | str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, torch.Tensor]:
    """:func:`read_state_dict` without the finiteness check, which is the first look at the values.

    Everything else is checked: the size, the format, the number of entries and every tensor's
    layout (:func:`check_layout`), so the values can then be read at a cost bounded by the
    file's size. Use it to compare keys and shapes with an architecture first.
    """
    _check_size(source, max_bytes)
    with _open(source) as stream:
        if _is_safetensors(stream):
            return _read_safetensors(stream)
        mapped = None
        if _is_zip(stream):
            _check_zip_entries(stream)
            if _is_torchscript(stream):
                raise CheckpointError(
                    "This file is a TorchScript archive; it carries code and is not loaded here. " + SAVE_HINT
                )
            if not isinstance(source, (bytes, bytearray)):
                mapped = str(source)  # torch's zip format from a file: tensors mapped, not read
        else:
            _check_legacy_entries(stream)
        stream.seek(0)
        loaded = _torch_load(stream, mapped)
    state = unwrap_state_dict(loaded)
    check_layout(state)
    return state


def _is_zip(stream: IO[bytes]) -> bool:
    stream.seek(0)
    head = stream.read(4)
    stream.seek(0)
    return head == b"PK\x03\x04"


def _zip_entry_count(stream: IO[bytes]) -> int | None:
    """Entries in a zip, read from its end-of-central-directory record (zip64 too); no listing."""
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    length = min(size, 65536 + 22)
    stream.seek(size - length)
    tail = stream.read(length)
    stream.seek(0)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 12 > len(tail):
        return None
    entries = int.from_bytes(tail[at + 10 : at + 12], "little")
    if entries != 0xFFFF:
        return entries
    locator = tail.rfind(b"PK\x06\x07", 0, at)
    if locator < 0 or locator + 16 > len(tail):
        return None
    stream.seek(int.from_bytes(tail[locator + 8 : locator + 16], "little"))
    record = stream.read(40)
    stream.seek(0)
    if len(record) < 40 or record[:4] != b"PK\x06\x06":
        return None
    return int.from_bytes(record[32:40], "little")


def _too_many(count: int) -> CheckpointError:
    return CheckpointError(
        f"This file holds {count:,} entries, more than the {MAX_KEYS:,} any supported architecture has "
        f"(the largest torchvision classifier has about 1,500); it is not a state dict of one of them. {SAVE_HINT}"
    )


def _check_zip_entries(stream: IO[bytes]) -> None:
    """Refuse a zip with more entries than a state dict has, or an oversized pickle, before loading."""
    count = _zip_entry_count(stream)
    if count is not None and count > MAX_KEYS + 8:
        raise _too_many(count)
    try:
        with zipfile.ZipFile(stream) as archive:
            pickles = [info for info in archive.infolist() if info.filename.endswith("data.pkl")]
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"This file is damaged or incomplete (its zip directory cannot be read: {exc}). Save or copy it again."
        ) from exc
    finally:
        stream.seek(0)
    if any(info.file_size > MAX_PICKLE_BYTES for info in pickles):
        biggest = max(info.file_size for info in pickles)
        raise CheckpointError(
            f"This file's table of contents is {_human(biggest)}, far more than a state dict of a supported "
            f"architecture needs (at most {_human(MAX_PICKLE_BYTES)}); it was refused before reading. {SAVE_HINT}"
        )


def _check_legacy_entries(stream: IO[bytes]) -> None:
    """Refuse a file of the old (pre-zip) format that references more tensors than a state dict has.

    Its object is the fourth of the pickles at the start of the file; each tensor in it is one
    persistent reference (``BINPERSID``). The opcodes are only scanned, never run, and the scan
    stops at the cap; a file that cannot be scanned is left to the safe loader's own message.
    """
    count = 0
    try:
        stream.seek(0)
        for index in range(4):
            for opcode, _arg, _pos in pickletools.genops(stream):
                if index == 3 and opcode.name in ("BINPERSID", "PERSID"):
                    count += 1
                    if count > MAX_KEYS:
                        raise _too_many_tensors(count)
    except CheckpointError:
        raise
    except Exception:  # noqa: BLE001 - damaged or not this format: torch.load says what it is
        pass
    finally:
        stream.seek(0)


def _too_many_tensors(count: int) -> CheckpointError:
    return CheckpointError(
        f"This file holds more than {MAX_KEYS:,} tensors, more than any supported architecture has (the "
        f"largest torchvision classifier has about 1,500); it is not a state dict of one of them. {SAVE_HINT}"
    )


def _is_safetensors(stream: IO[bytes]) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then a JSON object."""
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    head = stream.read(9)
    stream.seek(0)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    length = int.from_bytes(head[:8], "little")
    return 2 <= length <= size - 8


_SAFETENSORS_DTYPES = {
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
}


def _read_safetensors(stream: IO[bytes]) -> dict[str, torch.Tensor]:
    """A safetensors state dict: the header is checked (entry count, dtypes, shapes) before any data."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    length = int.from_bytes(stream.read(8), "little")
    if length > MAX_SAFETENSORS_HEADER:
        raise CheckpointError(
            f"This safetensors file's header is {_human(length)}, far more than a state dict of a supported "
            f"architecture needs (at most {_human(MAX_SAFETENSORS_HEADER)}). {SAVE_HINT}"
        )
    try:
        header = json.loads(stream.read(length).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError("This safetensors file is damaged: its header is not valid JSON. Save it again.") from exc
    if not isinstance(header, dict):
        raise CheckpointError("This safetensors file is damaged: its header is not a table of tensors. Save it again.")
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    if len(entries) > MAX_KEYS:
        raise _too_many(len(entries))
    for key, entry in entries.items():
        dtype = entry.get("dtype") if isinstance(entry, dict) else None
        if dtype not in _SAFETENSORS_DTYPES:
            raise CheckpointError(
                f"The weights {key!r} in this safetensors file have the type {dtype!r}; a state dict holds "
                "floating-point weights and integer counters only."
            )
    stream.seek(0)
    try:
        loaded = load_safetensors(stream.read())
    except (SafetensorError, ValueError, RuntimeError, TypeError) as exc:
        raise CheckpointError(
            f"This safetensors file is damaged or incomplete ({str(exc).splitlines()[0][:160]}). Save or copy it again."
        ) from exc
    state = unwrap_state_dict(loaded)
    check_layout(state)
    return state


def check_layout(state: Mapping[str, torch.Tensor]) -> None:
    """Refuse any tensor whose layout could make a small file stand for a large array.

    Looks only at metadata (layout, dtype, size, stride, storage offset and size), never at the
    values. Every tensor must be dense and strided, of a floating-point or integer type, with no
    stride 0 on a side longer than 1, no two elements at one place (no overlapping view), and lie
    inside its storage. Then its number of elements is at most its storage's, and reading all
    values costs at most the file's size.

    Raises
    ------
    CheckpointError
        Naming the first tensor that fails and why.
    """
    if len(state) > MAX_KEYS:
        raise _too_many(len(state))
    for key, value in state.items():
        problem = _layout_problem(value)
        if problem:
            raise CheckpointError(
                f"The weights {key!r} {problem}; this is not a state dict saved from a model. {SAVE_HINT}"
            )


def _layout_problem(value: torch.Tensor) -> str | None:
    if value.layout != torch.strided:
        layout = str(value.layout).replace("torch.", "").replace("_", " ")
        return f"are stored as a {layout} tensor, which is not supported (save dense weights)"
    if value.is_quantized:
        return "are quantized, which is not supported (save the float weights)"
    if value.device.type not in ("cpu", "meta"):
        return f"are on the device {value.device.type}"
    if value.dtype not in _VALUE_DTYPES + _COUNT_DTYPES:
        return f"have the type {str(value.dtype).replace('torch.', '')}, not a floating-point or integer type"
    sizes, strides = tuple(value.shape), tuple(value.stride())
    if any(s < 0 for s in sizes) or any(st < 0 for st in strides):
        return "have a negative size or stride"
    if any(size > 1 and stride == 0 for size, stride in zip(sizes, strides, strict=True)):
        return (
            f"are a view of shape {sizes} with stride {strides}: stride 0 repeats the same few numbers over the "
            "whole shape"
        )
    if 0 in sizes:
        return None
    # Non-overlapping: sorted by stride, each stride must step over everything the smaller ones span.
    span = 0
    for size, stride in sorted(((si, st) for si, st in zip(sizes, strides, strict=True) if si > 1), key=lambda p: p[1]):
        if stride <= span:
            return f"are a view of shape {sizes} with stride {strides}, whose elements overlap"
        span += (size - 1) * stride
    extent = value.storage_offset() + span + 1
    available = value.untyped_storage().nbytes() // value.element_size()
    if value.storage_offset() < 0 or extent > available:
        return f"reach past the end of their data ({extent:,} elements needed, {available:,} stored)"
    return None


def check_total_elements(state: Mapping[str, torch.Tensor], *, limit: int, arch: str) -> None:
    """Refuse a state dict with more elements in all than the architecture has (``limit``)."""
    total = sum(int(v.numel()) for v in state.values())
    if total > limit:
        raise CheckpointError(
            f"This state dict holds {total:,} numbers, more than the {limit:,} of the {arch} architecture; "
            "check the architecture you chose."
        )


def _open(source: bytes | str | Path) -> IO[bytes]:
    if isinstance(source, (bytes, bytearray)):
        return io.BytesIO(source)
    try:
        return open(source, "rb")  # closed by the caller's with-block
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
        layer = (head_key or "").rsplit(".", 1)[0]  # a head was found, so head_key is set
        raise CheckpointError(
            f"The checkpoint's classifier ({layer}) has {found} outputs, but the model was set up for "
            f"{num_classes} classes. Set the number of classes to {found}, or check that this is the "
            f"{arch} checkpoint you meant."
        )
    return int(num_classes)


class _Spec(Protocol):
    """What :func:`match_architecture` reads of an expected entry (a tensor or a ``TensorSpec``)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> torch.dtype: ...


def match_architecture(state: Mapping[str, torch.Tensor], expected: Mapping[str, _Spec], *, arch: str) -> None:
    """Compare keys, shapes and kinds of value with ``expected`` before any network is built.

    ``expected`` maps each key to an object with ``shape`` and ``dtype`` (a tensor, or
    :class:`xaicore.models.zoo.TensorSpec` from :func:`~xaicore.models.zoo.expected_state`).
    BatchNorm's ``num_batches_tracked`` counters may be absent (older checkpoints). Raises
    :class:`CheckpointError` naming the first few missing, unexpected and mis-shaped keys.
    """
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} {tuple(state[k].shape)} instead of {tuple(expected[k].shape)}"
        for k in state
        if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)
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
    wrong_kind = [
        f"{k} ({str(state[k].dtype).replace('torch.', '')})"
        for k, spec in expected.items()
        if k in state and spec.dtype.is_floating_point and not state[k].is_floating_point()
    ]
    if wrong_kind:
        raise CheckpointError(
            f"This state dict has whole numbers where the {arch} architecture has weights: {_few(wrong_kind)}. "
            f"{SAVE_HINT}"
        )


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
    # The per-module versions (``_metadata``) of a saved state dict do not survive unwrapping or
    # safetensors; keys and shapes match this architecture, so its own versions apply (MNASNet
    # refuses to load without one).
    fitted = OrderedDict(state)
    fitted._metadata = getattr(expected, "_metadata", None)  # type: ignore[attr-defined]
    try:
        net.load_state_dict(fitted, strict=True)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"This state dict does not fit the {arch} architecture: {exc}") from exc
