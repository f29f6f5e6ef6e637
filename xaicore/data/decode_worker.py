"""Decoding an uploaded image in a separate process, with a time limit.

:func:`load_image_isolated` gives what :func:`~xaicore.data.images.load_image` gives, but the
decoding runs in a child Python process that is killed when it takes longer than
``timeout_s``. A process rather than a thread, because a thread cannot be stopped: a decoder
stuck in C code (a pathological file, a bug in a codec) would keep its CPU and memory until it
finished, however long that takes, and a crash in a codec would take the whole server down
with it. A child process is killed at the deadline and everything it held is returned to the
system; its memory is also capped (``RLIMIT_DATA``), so even a wrong estimate cannot take the
server's memory.

Everything that can be refused from the header alone (format, pixel cap, aspect ratio, memory
budget: :func:`~xaicore.data.images.check_header`) is refused in the calling process first,
in milliseconds and without starting a process. Accepted files cost the start of a small
Python process (numpy and Pillow, no torch: about 0.3 s) on top of the decoding; the result
comes back through a private temporary ``.npy`` file, so the caller holds one copy of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from xaicore.data.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DECODE_BYTES,
    DEFAULT_MAX_PIXELS,
    LoadedImage,
    Source,
    _subject,
    check_header,
    load_image,
    read_capped,
)
from xaicore.errors import ImageLoadError

DEFAULT_TIMEOUT_S = 30.0
# The child's own memory (Python, numpy, Pillow) on top of the decoding budget.
_CHILD_BASE_BYTES = 400 * 10**6


def load_image_isolated(
    source: Source,
    *,
    name: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> LoadedImage:
    """:func:`~xaicore.data.images.load_image` in a child process stopped after ``timeout_s``.

    Raises
    ------
    ImageLoadError
        Everything :func:`load_image` refuses, with the same sentence; a decoding that takes
        longer than ``timeout_s`` seconds or ends the child process abnormally.
    """
    subject = _subject(source, name)
    data = read_capped(source, max_bytes=max_bytes, subject=subject)
    check_header(data, name=name, max_pixels=max_pixels, max_decode_bytes=max_decode_bytes)
    with tempfile.TemporaryDirectory(prefix="xai-decode-") as folder:
        out = Path(folder) / "image.npy"
        spec = {
            "name": name,
            "out": str(out),
            "max_pixels": max_pixels,
            "max_bytes": max_bytes,
            "max_decode_bytes": max_decode_bytes,
        }
        process = subprocess.Popen(  # our own module, with the same interpreter
            [sys.executable, "-m", "xaicore.data.decode_worker", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_child_env(),
        )
        try:
            reply, _ = process.communicate(input=data, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise ImageLoadError(
                f"{subject} took longer than {timeout_s:g} seconds to decode and was stopped; "
                "save it again in a common format (PNG or JPEG) or make it smaller."
            ) from None
        try:
            meta = json.loads(reply.decode("utf-8").strip().splitlines()[-1])
        except (UnicodeDecodeError, json.JSONDecodeError, IndexError):
            meta = None
        if not isinstance(meta, dict) or process.returncode != 0:
            raise ImageLoadError(
                f"{subject} could not be decoded: the decoder stopped unexpectedly (exit status "
                f"{process.returncode}); the file may be damaged or too large to decode."
            )
        if "error" in meta:
            raise ImageLoadError(str(meta["error"]))
        array = np.load(out, allow_pickle=False)
    return LoadedImage(
        array=array,
        format=str(meta["format"]),
        original_size=(int(meta["original_size"][0]), int(meta["original_size"][1])),
        notices=tuple(str(n) for n in meta["notices"]),
        name=name,
    )


def check_dicom_isolated(
    data: bytes,
    *,
    name: str | None = None,
    frame: int = 0,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> None:
    """Decode one frame of a DICOM file in a child process first, under the same time and memory limits.

    :func:`xaicore.data.dicom.read_dicom` checks the header caps itself; a compressed frame goes
    through a C decoder, which a thread could not stop. The caller reads the file itself only
    once the child has decoded it: a file that hangs or crashes its decoder is refused here.

    Raises
    ------
    ImageLoadError
        What :func:`read_dicom` refuses, with the same sentence; a decoding over ``timeout_s``
        seconds or one that ends the child abnormally.
    """
    subject = _subject(data, name)
    spec: dict[str, object] = {"kind": "dicom", "name": name, "frame": int(frame), "max_decode_bytes": max_decode_bytes}
    meta = _run_child(data, spec, subject=subject, timeout_s=timeout_s)
    if "error" in meta:
        raise ImageLoadError(str(meta["error"]))


def _run_child(data: bytes, spec: dict[str, object], *, subject: str, timeout_s: float) -> dict[str, object]:
    process = subprocess.Popen(  # our own module, with the same interpreter
        [sys.executable, "-m", "xaicore.data.decode_worker", json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=_child_env(),
    )
    try:
        reply, _ = process.communicate(input=data, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise ImageLoadError(
            f"{subject} took longer than {timeout_s:g} seconds to decode and was stopped; "
            "save it again uncompressed or make it smaller."
        ) from None
    try:
        meta = json.loads(reply.decode("utf-8").strip().splitlines()[-1])
    except (UnicodeDecodeError, json.JSONDecodeError, IndexError):
        meta = None
    if not isinstance(meta, dict) or process.returncode != 0:
        raise ImageLoadError(
            f"{subject} could not be decoded: the decoder stopped unexpectedly (exit status "
            f"{process.returncode}); the file may be damaged or too large to decode."
        )
    return meta


def _dicom_main(spec: dict[str, Any], data: bytes) -> dict[str, object]:
    from xaicore.data.dicom import read_dicom

    name = spec["name"]
    try:
        read_dicom(data, name=name, frame=int(spec["frame"]), max_decode_bytes=int(spec["max_decode_bytes"]))
    except ImageLoadError as exc:
        return {"error": str(exc)}
    except MemoryError:
        return {"error": f"{_subject(data, name)} is too large to decode in the memory available."}
    return {"ok": True}


def _child_env() -> dict[str, str]:
    """The caller's environment, with this copy of xaicore first on the path and one thread."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    return env


def _limit_memory(max_decode_bytes: int) -> None:
    try:
        import resource

        limit = int(max_decode_bytes) + _CHILD_BASE_BYTES
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    except (ImportError, ValueError, OSError):  # not on every system; the estimate still applies
        pass


def _main() -> int:
    spec = json.loads(sys.argv[1])
    data = sys.stdin.buffer.read()
    _limit_memory(spec["max_decode_bytes"])
    reply: dict[str, object]
    if spec.get("kind") == "dicom":
        sys.stdout.write(json.dumps(_dicom_main(spec, data)) + "\n")
        sys.stdout.flush()
        return 0
    try:
        loaded = load_image(
            data,
            name=spec["name"],
            max_pixels=spec["max_pixels"],
            max_bytes=spec["max_bytes"],
            max_decode_bytes=spec["max_decode_bytes"],
        )
        np.save(spec["out"], loaded.array, allow_pickle=False)
    except ImageLoadError as exc:
        reply = {"error": str(exc)}
    except MemoryError:
        reply = {"error": f"{_subject(data, spec['name'])} is too large to decode in the memory available."}
    else:
        reply = {"format": loaded.format, "original_size": list(loaded.original_size), "notices": list(loaded.notices)}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
