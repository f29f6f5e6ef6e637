"""Size caps of the dashboard's uploads, and checkpoints streamed to a temporary file.

Streamlit's ``server.maxUploadSize`` is one cap for the whole server; it is set to fit real
checkpoints (:data:`CHECKPOINT_UPLOAD_MB`: VGG-16 is 528 MB). Each uploader states its own cap
with ``max_upload_size`` (the browser refuses bigger files before sending them) and the server
checks it again here, from the upload's size, before a byte of it is read: images and zips of
images keep :data:`IMAGE_UPLOAD_MB`.

A checkpoint is copied to a private temporary file in chunks and loaded from that path, so the
weights are mapped from disk by ``torch.load`` instead of being copied in memory again.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from xaicore.data.images import DEFAULT_MAX_BYTES as IMAGE_MAX_BYTES
from xaicore.errors import CheckpointError, ImageLoadError
from xaicore.models.checkpoint import DEFAULT_MAX_BYTES as CHECKPOINT_MAX_BYTES

MB = 2**20
IMAGE_UPLOAD_MB = IMAGE_MAX_BYTES // MB
CHECKPOINT_UPLOAD_MB = CHECKPOINT_MAX_BYTES // MB
SERVER_UPLOAD_MB = max(IMAGE_UPLOAD_MB, CHECKPOINT_UPLOAD_MB)  # server.maxUploadSize
CHUNK_BYTES = 4 * MB

IMAGE_HELP = (
    f"PNG, JPEG, BMP, TIFF, WebP, GIF or DICOM, up to {IMAGE_UPLOAD_MB} MB; the format is judged by the content."
)
CHECKPOINT_HELP = (
    f"A state dict saved with torch.save(model.state_dict(), 'model.pt'), up to {CHECKPOINT_UPLOAD_MB} MB "
    f"(ResNet-50 is 98 MB, VGG-16 528 MB). Images have their own {IMAGE_UPLOAD_MB} MB cap."
)


def size_of(upload: BinaryIO | bytes) -> int:
    """The size in bytes of an upload (Streamlit's ``UploadedFile``, a binary file, or bytes)."""
    if isinstance(upload, (bytes, bytearray, memoryview)):
        return len(upload)
    size = getattr(upload, "size", None)
    if isinstance(size, int):
        return size
    position = upload.tell()
    end = upload.seek(0, 2)
    upload.seek(position)
    return int(end)


def check_image_size(upload: BinaryIO | bytes, name: str) -> None:
    """Refuse an image (or zip of images) over the image cap, before reading it."""
    size = size_of(upload)
    if size > IMAGE_MAX_BYTES:
        raise ImageLoadError(
            f"{name} is {size / MB:.0f} MB, over the {IMAGE_UPLOAD_MB} MB limit for images; "
            "use a smaller or compressed copy."
        )


@contextmanager
def spooled(upload: BinaryIO, *, name: str, max_bytes: int = CHECKPOINT_MAX_BYTES) -> Iterator[Path]:
    """The upload copied in chunks to a private temporary file, removed on exit.

    Raises :class:`~xaicore.errors.CheckpointError` when the upload is over ``max_bytes``
    (checked from its size, before copying) or cannot be written.
    """
    size = size_of(upload)
    if size > max_bytes:
        raise CheckpointError(
            f"{name} is {size / MB:.0f} MB, over the {max_bytes // MB} MB limit for checkpoints; use a smaller model."
        )
    suffix = Path(name).suffix.lower() if Path(name).suffix.lower() in (".pt", ".pth", ".bin") else ".pt"
    with tempfile.TemporaryDirectory(prefix="xai-ckpt-") as folder:
        path = Path(folder) / f"checkpoint{suffix}"
        try:
            upload.seek(0)
            with path.open("wb") as sink:
                shutil.copyfileobj(upload, sink, CHUNK_BYTES)
        except OSError as exc:
            raise CheckpointError(
                f"{name} could not be written to the server's temporary folder ({exc.strerror or exc}); "
                "free some disk space and try again."
            ) from exc
        yield path
