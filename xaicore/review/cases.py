"""A list of cases to review, one after another: a folder or a zip archive of image files.

:func:`open_cases` lists the cases without decoding them: every regular file whose first bytes
one of the registered decoders recognises is a case (hidden files, ``__MACOSX`` folders and
``<stem>.mask.png`` masks are not). Cases are ordered by their path with numbers compared as
numbers (``case-2`` before ``case-10``). :meth:`CaseList.load` reads one case when it is shown:
its bytes (capped), their sha256 (the case's identity in the review database), and the image
decoded by the decoder that recognised it.

Safety is that of uploads and image sets (:mod:`xaicore.data.images`,
:mod:`xaicore.data.imagesets`): nothing is extracted from a zip, entries with absolute paths or
``..`` are ignored, links and special files skipped, links leading out of a folder refused; the
number of zip entries is checked from the archive's last record before its directory is read;
each case is read with the per-image byte cap, so a zip bomb decompresses at most that much,
and decoded with the pixel and memory caps of :func:`~xaicore.data.images.load_image`.

Decoders: image files (PNG, JPEG, BMP, TIFF, WebP, GIF) by :func:`~xaicore.data.images.load_image`
are built in; another format (DICOM, say) plugs in with :func:`register_decoder`, a
:class:`CaseDecoder` that says from a file's first :data:`HEAD_BYTES` bytes whether it reads it.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from xaicore.data.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, LoadedImage, load_image
from xaicore.data.imagesets import MASK_SUFFIX, open_archive
from xaicore.errors import ImageLoadError, ParameterError
from xaicore.review.verdicts import CaseRef

HEAD_BYTES = 132
"""How many leading bytes of a file a decoder sees to say whether it reads it (DICOM's 'DICM'
sits at 128)."""
DEFAULT_MAX_CASES = 2000
DEFAULT_MAX_ENTRIES = 20_000
"""Most entries a zip may list (files and folders), checked before its directory is read."""
MAX_LISTED = 10


class CaseDecoder(Protocol):
    """Reads one kind of case file into an image."""

    name: str

    def accepts(self, head: bytes) -> bool:
        """Whether a file starting with ``head`` (up to :data:`HEAD_BYTES` bytes) is of this kind."""
        ...

    def decode(self, data: bytes, *, name: str, max_pixels: int, max_bytes: int) -> LoadedImage:
        """The file's image; raises :class:`~xaicore.errors.ImageLoadError` in plain words."""
        ...


# Leading bytes of the formats load_image reads (TIFF little and big endian, WebP in RIFF).
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*", b"GIF87a", b"GIF89a")


class ImageFileDecoder:
    """PNG, JPEG, BMP, TIFF, WebP and GIF files, by :func:`~xaicore.data.images.load_image`."""

    name = "image"

    def accepts(self, head: bytes) -> bool:
        return head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")

    def decode(self, data: bytes, *, name: str, max_pixels: int, max_bytes: int) -> LoadedImage:
        return load_image(data, name=name, max_pixels=max_pixels, max_bytes=max_bytes)


_DECODERS: list[CaseDecoder] = [ImageFileDecoder()]


def register_decoder(decoder: CaseDecoder) -> None:
    """Let case lists read another kind of file; a decoder of the same ``name`` is replaced.
    Decoders are asked in the order registered, the built-in image decoder first."""
    _DECODERS[:] = [d for d in _DECODERS if d.name != decoder.name] + [decoder]


def decoders() -> tuple[CaseDecoder, ...]:
    """The registered decoders, in the order they are asked."""
    return tuple(_DECODERS)


def decoder_for(head: bytes) -> CaseDecoder | None:
    """The first registered decoder that reads a file starting with ``head``, or ``None``."""
    return next((d for d in _DECODERS if d.accepts(head)), None)


@dataclass(frozen=True)
class Case:
    """One case of a list: its position, its path inside the source and the decoder for it."""

    index: int
    name: str
    kind: str


@dataclass(frozen=True)
class LoadedCase:
    """A case read and decoded: the image, the sha256 of its bytes and its database name."""

    case: Case
    image: LoadedImage
    sha256: str
    ref: CaseRef


@dataclass(frozen=True)
class CaseList:
    """The cases of a folder or zip, in review order.

    ``source`` names the list in the review database: the folder's absolute path, or
    ``zip:<file name>`` for an uploaded archive. ``origin`` is what the cases are read from (the
    folder or zip path, or the zip's bytes).
    """

    source: str
    origin: Path | bytes
    cases: tuple[Case, ...]
    notices: tuple[str, ...] = ()
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __len__(self) -> int:
        return len(self.cases)

    def index_of(self, name: str) -> int | None:
        """The position of the case called ``name``, or ``None``."""
        return next((c.index for c in self.cases if c.name == name), None)

    def read(self, index: int) -> bytes:
        """The bytes of case ``index`` (at most :attr:`max_bytes`)."""
        case = self._case(index)
        subject = f"The case {case.name!r}"
        try:
            with open_archive(self.origin) as archive:
                data = archive.read(case.name, self.max_bytes)
        except ImageLoadError:
            raise
        except (OSError, KeyError, zipfile.BadZipFile, RuntimeError, ValueError, EOFError, NotImplementedError) as exc:
            raise ImageLoadError(f"{subject} could not be read ({exc}); it may have been moved or changed.") from exc
        if len(data) > self.max_bytes:
            raise ImageLoadError(f"{subject} is larger than the {self.max_bytes // 2**20} MB limit for images.")
        if not data:
            raise ImageLoadError(f"{subject} is empty.")
        return data

    def load(self, index: int) -> LoadedCase:
        """Case ``index`` read, hashed and decoded; :class:`~xaicore.errors.ImageLoadError` in
        plain words when it cannot be."""
        case = self._case(index)
        data = self.read(index)
        decoder = next((d for d in _DECODERS if d.name == case.kind), None) or decoder_for(data[:HEAD_BYTES])
        if decoder is None:
            raise ImageLoadError(f"The case {case.name!r} is no longer a file any decoder reads.")
        image = decoder.decode(data, name=case.name, max_pixels=self.max_pixels, max_bytes=self.max_bytes)
        sha = hashlib.sha256(data).hexdigest()
        return LoadedCase(case=case, image=image, sha256=sha, ref=CaseRef(self.source, case.name, sha))

    def _case(self, index: int) -> Case:
        if not 0 <= int(index) < len(self.cases):
            raise ParameterError(f"There is no case {index + 1} in a list of {len(self.cases)}.")
        return self.cases[int(index)]


def open_cases(
    source: str | Path | bytes,
    *,
    name: str | None = None,
    max_cases: int = DEFAULT_MAX_CASES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> CaseList:
    """The cases of a folder, a zip file or the bytes of a zip (``name``: its file name).

    Parameters
    ----------
    max_cases:
        Most cases listed; the rest are left out with a notice.
    max_entries:
        Most entries a zip may hold, checked before its directory is read.
    max_bytes, max_pixels:
        Per-case caps, as for uploads (:func:`~xaicore.data.images.load_image`).

    Raises
    ------
    ImageLoadError
        The source is neither a folder nor a readable zip, holds too many entries, or holds no
        file that a decoder reads.
    """
    if max_cases < 1 or max_entries < 1:
        raise ParameterError("max_cases and max_entries must be at least 1.")
    if isinstance(source, (bytes, bytearray, memoryview)):
        origin: Path | bytes = bytes(source)
        label = f"zip:{name or 'archive.zip'}"
        _check_entries(origin, max_entries, f"The archive {name!r}" if name else "The archive")
    else:
        path = Path(source).expanduser()
        origin = Path(os.path.realpath(path))
        label = str(origin)
        if path.is_file():
            _check_entries(origin, max_entries, f"The file {path.name!r}")
            label = f"zip:{origin}"
    notices: list[str] = []
    cases: list[Case] = []
    unread: list[str] = []
    with open_archive(origin) as archive:
        candidates = _candidates(archive.paths())
        if archive.ignored:
            notices.append(f"Entries with unsafe paths (absolute or with '..') ignored: {_listing(archive.ignored)}.")
        if archive.skipped:
            skipped = [f"{entry!r} ({what})" for entry, what in archive.skipped]
            notices.append(f"Only regular files are read; skipped: {_listing(skipped)}.")
        for position, entry in enumerate(candidates):
            if len(cases) >= max_cases:
                notices.append(
                    f"Only the first {max_cases} cases are listed; {_count(len(candidates) - position, 'more file')} "
                    "not looked at."
                )
                break
            try:
                head = archive.read(entry, HEAD_BYTES)[:HEAD_BYTES]
            except (OSError, KeyError, zipfile.BadZipFile, RuntimeError, ValueError, EOFError, NotImplementedError):
                unread.append(entry)
                continue
            decoder = decoder_for(head)
            if decoder is None:
                unread.append(entry)
                continue
            cases.append(Case(index=len(cases), name=entry, kind=decoder.name))
    if unread:
        notices.append(f"{_count(len(unread), 'file')} that no decoder reads left out: {_listing(unread)}.")
    if not cases:
        where = "zip archive" if label.startswith("zip:") else "folder"
        raise ImageLoadError(f"The {where} holds no case: no image file ({_kinds()}) was found in it.")
    return CaseList(
        source=label,
        origin=origin,
        cases=tuple(cases),
        notices=tuple(notices),
        max_bytes=max_bytes,
        max_pixels=max_pixels,
    )


def case_folders(root: str | Path, *, max_depth: int = 2, limit: int = 500) -> tuple[str, ...]:
    """Folders under ``root`` (relative POSIX paths, ``"."`` for ``root`` itself) to offer as case
    lists, to ``max_depth`` levels; hidden folders and links are not followed."""
    base = Path(root)
    if not base.is_dir():
        raise ImageLoadError(f"The folder of cases {str(base)!r} does not exist.")
    found = ["."]
    for directory, dirs, _files in os.walk(base, followlinks=False):
        rel = Path(directory).relative_to(base)
        dirs[:] = sorted(
            (d for d in dirs if not d.startswith(".") and not os.path.islink(os.path.join(directory, d))),
            key=natural_key,
        )
        if len(rel.parts) >= max_depth:
            dirs[:] = []
        found.extend((rel / d).as_posix() for d in dirs)
        if len(found) >= limit:
            break
    return tuple(found[:limit])


def folder_within(root: str | Path, relative: str) -> Path:
    """``root / relative`` when it stays inside ``root`` (links resolved); else
    :class:`~xaicore.errors.ParameterError`."""
    base = Path(os.path.realpath(root))
    target = Path(os.path.realpath(base / relative))
    if not target.is_relative_to(base):
        raise ParameterError(f"The folder {relative!r} lies outside the folder of cases.")
    return target


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key comparing runs of digits as numbers and the rest without case."""
    return tuple((0, int(part)) if part.isdigit() else (1, part.casefold()) for part in re.split(r"(\d+)", text))


# ----------------------------------------------------------------------------------------
# internals


def _candidates(paths: Sequence[str]) -> list[str]:
    kept = []
    for path in paths:
        parts = PurePosixPath(path).parts
        if any(p.startswith(".") or p == "__MACOSX" for p in parts) or path.lower().endswith(MASK_SUFFIX):
            continue
        kept.append(path)
    return sorted(kept, key=natural_key)


_EOCD = b"PK\x05\x06"
_EOCD_SIZE = 22
_MAX_COMMENT = 0xFFFF


def _check_entries(origin: Path | bytes, max_entries: int, subject: str) -> None:
    """Refuse a zip whose last record lists more than ``max_entries`` entries (or the Zip64
    marker that means more than 65,535), before Python reads its whole directory."""
    tail = _tail(origin, _EOCD_SIZE + _MAX_COMMENT)
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) < at + _EOCD_SIZE:
        raise ImageLoadError(f"{subject} is not a readable zip archive or folder of images.")
    (entries,) = struct.unpack("<H", tail[at + 10 : at + 12])
    if entries == 0xFFFF or entries > max_entries:
        shown = "more than 65,535" if entries == 0xFFFF else f"{entries:,}"
        raise ImageLoadError(
            f"{subject} lists {shown} entries, over the limit of {max_entries:,} for a case list; split it."
        )


def _tail(origin: Path | bytes, size: int) -> bytes:
    if isinstance(origin, bytes):
        return origin[-size:]
    try:
        with origin.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - size))
            return handle.read(size)
    except OSError as exc:
        raise ImageLoadError(f"The file {origin.name!r} could not be read ({exc.strerror or exc}).") from exc


def _kinds() -> str:
    return ", ".join(d.name for d in _DECODERS) if len(_DECODERS) > 1 else "PNG, JPEG, BMP, TIFF, WebP or GIF"


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f" ... and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def _count(n: int, singular: str) -> str:
    return f"{n} {singular if n == 1 else singular + 's'}"
