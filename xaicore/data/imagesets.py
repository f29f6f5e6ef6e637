"""Sets of images for data-set level measurements: a folder, a zip archive, or generated shapes.

Layout of a folder or zip (ImageFolder style)::

    <class name>/<image file>          labelled by the folder name
    <image file>                       at the top: no label
    <stem>.mask.png                    optional object mask of the image <stem>.* beside it

Labels are matched to ``class_names`` by exact name, then ignoring case, spaces, ``-`` and
``_``, then as a class index (folder ``"3"``). Every image goes through
:func:`~xaicore.data.images.load_image`; a file that cannot be read is skipped with a notice
naming it, so one bad file never spoils the set. Only regular files are read: FIFOs, devices,
sockets and symbolic links that lead out of the folder (or nowhere) are skipped and listed in
a notice, so that reading a set can never block or leave its folder. Zip archives are read in
memory only (nothing is extracted): entries with absolute paths or ``..`` are ignored, entries
stored as links or special files are skipped, and the uncompressed bytes read are capped so
that a zip bomb cannot exhaust memory.
"""

from __future__ import annotations

import io
import os
import re
import stat
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from xaicore.data.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, load_image, load_mask
from xaicore.errors import ImageLoadError, ParameterError

if TYPE_CHECKING:
    from xaicore.models.preprocess import Preprocess

MASK_SUFFIX = ".mask.png"
DEFAULT_MAX_IMAGES = 2000
DEFAULT_MAX_TOTAL_BYTES = 1 << 30  # uncompressed bytes read from a folder or zip
DEFAULT_MAX_TOTAL_PIXELS = 100_000_000  # decoded pixels kept in memory (1.2 GB as float32 RGB)
MAX_LISTED_PROBLEMS = 20


@dataclass(frozen=True)
class ImageItem:
    """One image of a set: ``array`` (H, W, 3) float32 in [0, 1], ``mask`` (H, W) bool or None."""

    name: str
    array: np.ndarray
    label: int | None
    mask: np.ndarray | None = None


@dataclass(frozen=True)
class ImageSet:
    """Images with optional labels (indices into ``class_names``) and notices about loading."""

    items: tuple[ImageItem, ...]
    class_names: tuple[str, ...]
    notices: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.items)

    def labels(self) -> tuple[int | None, ...]:
        """Each item's label, in order."""
        return tuple(item.label for item in self.items)


def load_image_set(
    source: str | Path | bytes,
    *,
    class_names: Sequence[str] | None = None,
    limit: int | None = None,
    size: tuple[int, int] | None = None,
    preprocess: Preprocess | None = None,
    max_images: int = DEFAULT_MAX_IMAGES,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_total_pixels: int = DEFAULT_MAX_TOTAL_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ImageSet:
    """Read a folder, a zip file or zip bytes into an :class:`ImageSet`.

    Parameters
    ----------
    source:
        A folder path, a path to a zip file, or the bytes of a zip file.
    class_names:
        The model's class names, to turn folder names into labels. ``None``: the sorted
        distinct folder names become the classes.
    limit:
        Take at most this many images (in sorted path order), for quick runs.
    size:
        (height, width) to resize every image to as it loads (bilinear with antialiasing,
        like :meth:`ModelBundle.to_input`; masks nearest), which bounds memory; ``None`` keeps
        each image at full size.
    preprocess:
        A model's rule (``bundle.preprocess``) to bring every image to its input size as it
        loads, exactly as :meth:`ModelBundle.to_input` would (resize, centre crop where the rule
        says so), with each mask through the same resize and crop; in place of ``size``.
    max_images, max_total_bytes, max_total_pixels:
        Safety caps on the number of images, the uncompressed bytes read, and the decoded
        pixels kept; loading stops at a cap with a notice.
    max_pixels, max_bytes:
        Per-image caps, as in :func:`~xaicore.data.images.load_image`.

    Raises
    ------
    ImageLoadError
        The source is neither a folder nor a readable zip, or it holds no readable image.
    """
    if limit is not None and limit < 1:
        raise ParameterError("limit must be at least 1 image (or None for all).")
    if max_images < 1:
        raise ParameterError("max_images must be at least 1.")
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ParameterError("size must be (height, width) with both at least 1.")
    if size is not None and preprocess is not None:
        raise ParameterError("Give size or preprocess, not both: the preprocessing sets the size.")
    with _open_source(source) as archive:
        return _Loader(
            archive,
            class_names=class_names,
            take=min(limit or max_images, max_images),
            cap_note=limit is None or limit > max_images,
            size=size,
            preprocess=preprocess,
            max_total_bytes=max_total_bytes,
            max_total_pixels=max_total_pixels,
            max_pixels=max_pixels,
            max_bytes=max_bytes,
        ).run()


HARD_DIFFICULTY = 0.3  # difficulty of the "hard" generated set: the default model gets about a quarter wrong


def generated_test_set(n: int, *, seed: int, size: int = 64, difficulty: float = 0.0) -> ImageSet:
    """``n`` freshly generated shape images with their labels (the default model's classes).

    ``difficulty`` (0 to 1) makes harder images (smaller objects, clutter, an occluding bar,
    noise: :func:`xaicore.data.shapes.generate`); :data:`HARD_DIFFICULTY` is the "hard" set.
    """
    from xaicore.data import shapes

    images, labels = shapes.generate(n, seed=seed, size=size, difficulty=difficulty)
    stem = "shape" if difficulty == 0 else "hard-shape"
    items = tuple(
        ImageItem(name=f"{stem}-{i:05d}", array=np.array(images[i], dtype=np.float32), label=int(labels[i]))
        for i in range(n)
    )
    return ImageSet(items=items, class_names=tuple(shapes.CLASSES), notices=())


def match_class(name: str, classes: Sequence[str]) -> int | None:
    """The index in ``classes`` of the class called ``name``: exact name first, then ignoring case,
    spaces, ``-`` and ``_`` (``"Golden_Retriever"`` matches ``"golden retriever"``); ``None`` if none."""
    classes = tuple(classes)
    if name in classes:
        return classes.index(name)
    wanted = _normal(name)
    for index, candidate in enumerate(classes):
        if _normal(candidate) == wanted:
            return index
    return None


def relabel(image_set: ImageSet, class_names: Sequence[str]) -> ImageSet:
    """``image_set`` with each label turned into the index of the same class in ``class_names``
    (a model's labels), matched by :func:`match_class`.

    Labels whose class the model does not have become ``None``, with one notice naming those
    classes; object masks stay. A set already labelled with ``class_names`` is returned as is.
    """
    target = tuple(class_names)
    if tuple(image_set.class_names) == target:
        return image_set
    mapping = {i: match_class(name, target) for i, name in enumerate(image_set.class_names)}
    items: list[ImageItem] = []
    dropped: dict[str, int] = {}
    for item in image_set.items:
        label = None if item.label is None else mapping.get(int(item.label))
        if item.label is not None and label is None:
            name = (
                image_set.class_names[int(item.label)]
                if 0 <= int(item.label) < len(image_set.class_names)
                else str(item.label)
            )
            dropped[name] = dropped.get(name, 0) + 1
        items.append(ImageItem(item.name, item.array, label, item.mask))
    notices = list(image_set.notices)
    if dropped:
        kept = sum(item.label is not None for item in items)
        notices.append(
            f"The model has no class named {_listing(sorted(dropped))}, so {_count(sum(dropped.values()), 'image')} "
            f"{'is' if sum(dropped.values()) == 1 else 'are'} left without a label "
            f"({_count(kept, 'image')} keep theirs; "
            "an unlabelled image is explained for its predicted class)."
        )
    return ImageSet(items=tuple(items), class_names=target, notices=tuple(notices))


def resize_image(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) float32 resized to ``size`` = (height, width) exactly as model input is resized."""
    if tuple(array.shape[:2]) == tuple(size):
        return np.array(array, dtype=np.float32)
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)
    y = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True).clamp(0.0, 1.0)
    return np.ascontiguousarray(y[0].permute(1, 2, 0).numpy(), dtype=np.float32)


# ----------------------------------------------------------------------------------------
# sources: a folder or a zip, seen as relative POSIX paths with a bounded reader


class _Archive(Protocol):
    """Relative POSIX paths of the files in a source, and a reader that stops at a limit."""

    ignored: list[str]  # entries refused for their path
    skipped: list[tuple[str, str]]  # (entry, what it is) for entries that are not regular files

    def paths(self) -> list[str]: ...

    def read(self, path: str, limit: int) -> bytes: ...

    def close(self) -> None: ...


def _kind(mode: int) -> str:
    """What a file of this ``st_mode`` is, in words, when it is not a regular file."""
    for test, words in (
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return words
    return "not a regular file"


class _Folder:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.real_root = Path(os.path.realpath(root))
        self.ignored: list[str] = []
        self.skipped: list[tuple[str, str]] = []

    def paths(self) -> list[str]:
        found = []
        for directory, dirs, files in os.walk(self.root, followlinks=False):
            rel = Path(directory).relative_to(self.root)
            for d in dirs:
                if not d.startswith(".") and os.path.islink(os.path.join(directory, d)):
                    self.skipped.append(((rel / d).as_posix(), "a link to a folder"))
            dirs[:] = sorted(
                d for d in dirs if not d.startswith(".") and not os.path.islink(os.path.join(directory, d))
            )
            for f in sorted(files):
                name = (rel / f).as_posix()
                why = self._refusal(Path(directory) / f)
                if why is None:
                    found.append(name)
                elif not f.startswith("."):
                    self.skipped.append((name, why))
        return found

    def _refusal(self, path: Path) -> str | None:
        """Why ``path`` is not read (None: it is a regular file inside the folder)."""
        try:
            info = os.lstat(path)
        except OSError:
            return "unreadable"
        if stat.S_ISLNK(info.st_mode):
            target = Path(os.path.realpath(path))
            if not target.is_relative_to(self.real_root):
                return "a link that leads out of the folder"
            try:
                info = os.stat(target)
            except OSError:
                return "a link to nothing"
        return None if stat.S_ISREG(info.st_mode) else _kind(info.st_mode)

    def read(self, path: str, limit: int) -> bytes:
        full = self.root / path
        why = self._refusal(full)
        if why is not None:
            raise OSError(f"it is {why}")
        # O_NONBLOCK: should the entry have become a FIFO since it was listed, opening it
        # does not wait for a writer; fstat then refuses it before anything is read.
        fd = os.open(full, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise OSError("it is not a regular file")
            return handle.read(limit + 1)

    def close(self) -> None:
        return None


class _Zip:
    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf
        self.ignored: list[str] = []
        self.skipped: list[tuple[str, str]] = []

    def paths(self) -> list[str]:
        found = []
        for info in self.zf.infolist():
            if info.is_dir():
                continue
            name = info.filename
            parts = PurePosixPath(name.replace("\\", "/")).parts
            if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
                self.ignored.append(name)
                continue
            mode = info.external_attr >> 16  # Unix mode, when the archive was made on Unix
            if info.create_system == 3 and stat.S_IFMT(mode) not in (0, stat.S_IFREG):
                self.skipped.append((name, "a link" if stat.S_ISLNK(mode) else _kind(mode)))
                continue
            found.append(name)
        return found

    def read(self, path: str, limit: int) -> bytes:
        with self.zf.open(path) as handle:
            return handle.read(limit + 1)

    def close(self) -> None:
        self.zf.close()


def open_archive(source: str | Path | bytes) -> AbstractContextManager[_Archive]:
    """A folder, a zip file or zip bytes as an archive: ``paths()`` lists the relative POSIX paths
    of its regular files (unsafe zip paths in ``ignored``, links and special files in
    ``skipped``), ``read(path, limit)`` returns at most ``limit + 1`` bytes of one; closed on exit.

    The same rules as :func:`load_image_set` (see this module's docstring); raises
    :class:`~xaicore.errors.ImageLoadError` for a source that is neither a folder nor a zip.
    """
    return _open_source(source)


@contextmanager
def _open_source(source: str | Path | bytes) -> Iterator[_Archive]:
    archive = _make_archive(source)
    try:
        yield archive
    finally:
        archive.close()


def _make_archive(source: str | Path | bytes) -> _Archive:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _zip_from(io.BytesIO(bytes(source)), "The uploaded archive")
    path = Path(source)
    if path.is_dir():
        return _Folder(path)
    if path.is_file():
        return _zip_from(path, f"The file {path.name!r}")
    raise ImageLoadError(f"No folder or zip file was found at {str(path)!r}.")


def _zip_from(handle: Path | io.BytesIO, subject: str) -> _Zip:
    try:
        return _Zip(zipfile.ZipFile(handle))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise ImageLoadError(f"{subject} is not a readable zip archive or folder of images.") from exc


# ----------------------------------------------------------------------------------------
# loading


class _Loader:
    def __init__(
        self,
        archive: _Archive,
        *,
        class_names: Sequence[str] | None,
        take: int,
        cap_note: bool,
        size: tuple[int, int] | None,
        max_total_bytes: int,
        max_total_pixels: int,
        max_pixels: int,
        max_bytes: int,
        preprocess: Preprocess | None = None,
    ) -> None:
        self.archive = archive
        self.given_classes = tuple(class_names) if class_names is not None else None
        self.take = take
        self.cap_note = cap_note
        self.size = size
        self.preprocess = preprocess
        self.max_total_bytes = max_total_bytes
        self.max_total_pixels = max_total_pixels
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        self.bytes_read = 0
        self.pixels_kept = 0
        self.notices: list[str] = []
        self.problems: list[str] = []

    def run(self) -> ImageSet:
        images, masks = _split(self.archive.paths())
        ignored = self.archive.ignored
        if ignored:
            self.notices.append(
                f"{_count(len(ignored), 'archive entry', 'archive entries')} with unsafe paths "
                f"(absolute or with '..') ignored: {_listing(ignored)}."
            )
        skipped = getattr(self.archive, "skipped", [])
        if skipped:
            self.notices.append(
                f"{_count(len(skipped), 'entry', 'entries')} skipped because only regular files are read: "
                f"{_listing([f'{name!r} ({what})' for name, what in skipped])}."
            )
        classes = self.given_classes if self.given_classes is not None else _folder_classes(images)
        labeller = _Labeller(classes)
        items: list[ImageItem] = []
        for position, path in enumerate(images):
            if len(items) >= self.take:
                self._note_cut(len(images) - position)
                break
            if self.bytes_read > self.max_total_bytes or self.pixels_kept > self.max_total_pixels:
                self.notices.append(
                    f"Loading stopped after {len(items)} images: the set reached its memory cap. "
                    "Load fewer images (limit) or resize them as they load (size)."
                )
                break
            item = self._load_item(path, masks.get(_stem_key(path)), labeller)
            if item is not None:
                items.append(item)
        self.notices.extend(labeller.notices())
        self._note_problems()
        if not items:
            raise ImageLoadError(
                "No readable image was found in the set." + (f" {self.problems[0]}" if self.problems else "")
            )
        return ImageSet(items=tuple(items), class_names=tuple(classes), notices=tuple(self.notices))

    def _load_item(self, path: str, mask_path: str | None, labeller: _Labeller) -> ImageItem | None:
        try:
            data = self._read(path)
            loaded = load_image(data, name=path, max_pixels=self.max_pixels, max_bytes=self.max_bytes)
        except ImageLoadError as exc:
            self.problems.append(str(exc))
            return None
        if self.preprocess is not None:
            array = self.preprocess.apply(loaded.array)[0]
        else:
            array = loaded.array if self.size is None else resize_image(loaded.array, self.size)
        self.pixels_kept += array.shape[0] * array.shape[1]
        mask = None
        if mask_path is not None:
            try:
                mask = load_mask(
                    self._read(mask_path),
                    size=loaded.array.shape[:2] if self.preprocess else array.shape[:2],
                    name=mask_path,
                    max_pixels=self.max_pixels,
                    max_bytes=self.max_bytes,
                )
            except ImageLoadError as exc:
                self.problems.append(f"{exc} (mask ignored)")
            else:
                mask = mask if self.preprocess is None else self.preprocess.apply_mask(mask)
        return ImageItem(name=path, array=array, label=labeller.label(path), mask=mask)

    def _read(self, path: str) -> bytes:
        try:
            data = self.archive.read(path, self.max_bytes)
        except (OSError, zipfile.BadZipFile, RuntimeError, ValueError, EOFError, NotImplementedError) as exc:
            raise ImageLoadError(f"The file {path!r} could not be read from the set ({exc}).") from exc
        self.bytes_read += len(data)
        return data

    def _note_cut(self, remaining: int) -> None:
        reason = "the cap on images per set" if self.cap_note else "the requested limit"
        self.notices.append(
            f"Only the first {_count(self.take, 'image')} loaded ({reason}); {_count(remaining, 'more file')} not read."
        )

    def _note_problems(self) -> None:
        if not self.problems:
            return
        shown = self.problems[:MAX_LISTED_PROBLEMS]
        more = len(self.problems) - len(shown)
        tail = f" ... and {more} more." if more else ""
        self.notices.append(f"{_count(len(self.problems), 'file')} skipped: " + " | ".join(shown) + tail)


def _split(paths: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Candidate image paths (sorted) and mask paths by image stem key."""
    images, masks = [], {}
    for path in sorted(paths, key=lambda p: (p.casefold(), p)):
        parts = PurePosixPath(path).parts
        if any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue
        if path.lower().endswith(MASK_SUFFIX):
            masks[path[: -len(MASK_SUFFIX)]] = path
        else:
            images.append(path)
    return images, masks


def _stem_key(path: str) -> str:
    pure = PurePosixPath(path)
    return str(pure.with_suffix("")) if pure.suffix else path


def _folder_classes(images: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted({PurePosixPath(p).parent.name for p in images if PurePosixPath(p).parent.name}))


def _normal(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).casefold()


class _Labeller:
    """Folder name -> class index, remembering folders that match no class."""

    def __init__(self, classes: Sequence[str]) -> None:
        self.classes = tuple(classes)
        self.exact = {c: i for i, c in enumerate(self.classes)}
        self.loose: dict[str, int] = {}
        for i, c in enumerate(self.classes):
            self.loose.setdefault(_normal(c), i)
        self.unknown: dict[str, int] = {}

    def label(self, path: str) -> int | None:
        folder = PurePosixPath(path).parent.name
        if not folder:
            return None
        index = self._match(folder)
        if index is None:
            self.unknown[folder] = self.unknown.get(folder, 0) + 1
        return index

    def _match(self, folder: str) -> int | None:
        if folder in self.exact:
            return self.exact[folder]
        if _normal(folder) in self.loose:
            return self.loose[_normal(folder)]
        if folder.isdigit() and int(folder) < len(self.classes):
            return int(folder)
        return None

    def notices(self) -> Iterator[str]:
        for folder, count in sorted(self.unknown.items()):
            images = "its image has" if count == 1 else f"its {count} images have"
            yield f"The folder {folder!r} matches no class of the model, so {images} no label."


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED_PROBLEMS])
    return shown + (f" ... and {len(names) - MAX_LISTED_PROBLEMS} more" if len(names) > MAX_LISTED_PROBLEMS else "")


def _count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n} {singular if n == 1 else plural or singular + 's'}"
