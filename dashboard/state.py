"""Per-session state of the dashboard: the current selection, a bounded result store, models.

The sidebar (:mod:`dashboard.sidebar`) writes the selection; pages read it with
:func:`current_model`, :func:`current_image` and :func:`current_target`, and keep finished
computations with :func:`put_result` / :func:`get_result` (explanations under the one key of
:mod:`dashboard.explanations`). The result store is a per-session LRU of :data:`RESULT_CAPACITY`
entries, so a long session's memory levels off. A result is put only once its computation has
finished; a computation that finishes in parts (batches of rows) keeps the parts done so far
with :func:`keep_partial` in the same store, so Stop or a rerun loses only the part in flight.

Every value widget of the sidebar and the pages takes its key through :func:`kept`
(``st.slider(..., **state.kept(KEY, default=0.6))``): the user's choice is kept in a session
entry Streamlit never cleans and seeds the widget whenever it is drawn, so a fragment rerun, a
page switch, an in-app link or the browser's Back button changes nothing the user chose. A
default that depends on the model (``scope=bundle.fingerprint``) starts again only when the
model really changes. Finished results stay in the result store under keys built from those
choices, so a page shows them again when the user comes back. A full page load (typing the
address, reloading) opens a new Streamlit session, which starts from the defaults.

Models are cached with ``st.cache_resource`` and shared by every session: nothing here or in
the pages may change them (xaicore works on private copies). A checkpoint uploaded by a user
stays in that user's session only.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st

from dashboard.safe_text import plain
from xaicore.errors import XaiError
from xaicore.explainers.api import top_predictions
from xaicore.explainers.results import Prediction
from xaicore.models.bundle import ModelBundle

LOG = logging.getLogger("dashboard")

RESULT_CAPACITY = 32

# st.session_state keys written by the sidebar and read by pages.
MODEL_KEY = "xai.model"
IMAGE_KEY = "xai.image"
TARGET_KEY = "xai.target"
PREDICTIONS_KEY = "xai.predictions"
UPLOADED_MODEL_KEY = "xai.uploaded_model"
_STORE_KEY = "xai.results"
UPLOADED_IMAGE_KEY = "xai.uploaded_image"  # the last image this session uploaded
SESSION_MODELS_KEY = "xai.session_models"  # menu key -> bundle: models made in this session (corrections)
KEPT_KEY = "xai.kept"  # widget key -> (value, scope): the values of kept widgets (:func:`kept`)

UNEXPECTED = (
    "Something went wrong on the server and this part of the page could not be shown; "
    "try again or choose other settings."
)


@dataclass(frozen=True, eq=False)
class CurrentImage:
    """The image the user chose: pixels in [0, 1] and where they came from.

    ``masks`` (k, H, W) bool with ``mask_labels`` give ground-truth objects when known
    (generated scenes); ``label`` is the true class when known.
    """

    array: np.ndarray
    name: str
    hash: str
    source: str  # "upload" or "sample"
    notices: tuple[str, ...] = ()
    label: int | None = None
    masks: np.ndarray | None = None
    mask_labels: tuple[int, ...] = ()
    description: str = ""


class ResultStore:
    """A thread-safe LRU mapping with a fixed capacity.

    ``put`` beyond ``capacity`` evicts the least recently used entry; ``get`` marks an entry
    as recently used.
    """

    def __init__(self, capacity: int = RESULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def items(self) -> list[tuple[Hashable, Any]]:
        """A snapshot of the (key, value) pairs, least recently used first; marks nothing as used."""
        with self._lock:
            return list(self._items.items())

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def discard(self, key: Hashable) -> None:
        """Remove ``key`` when present."""
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def freeze(value: Any) -> Hashable:
    """A hashable, order-independent copy of nested dicts, lists and sets of plain values."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, (set, frozenset)):
        members: list[Any] = [freeze(v) for v in value]  # plain values: comparable
        return tuple(sorted(members))
    if isinstance(value, np.generic):
        return value.item()
    return value


def result_key(kind: str, **parts: Any) -> tuple[Hashable, ...]:
    """A store key: the kind of result plus its named inputs, frozen and order-independent.

    Example: ``result_key("explain", fingerprint=fp, image=h, method="saliency", params={},
    seed=0, baseline="black", target=3)``.
    """
    return (kind, freeze(parts))


def result_store() -> ResultStore:
    """This session's result store (created on first use)."""
    store = st.session_state.get(_STORE_KEY)
    if not isinstance(store, ResultStore):
        store = ResultStore()
        st.session_state[_STORE_KEY] = store
    return store


def get_result(key: Hashable, default: Any = None) -> Any:
    """A finished result of this session, or ``default``."""
    return result_store().get(key, default)


def put_result(key: Hashable, value: Any) -> None:
    """Keep a finished result in this session (least recently used ones are evicted); the parts
    kept for it while it ran (:func:`keep_partial`) are dropped."""
    store = result_store()
    store.put(key, value)
    store.discard(_partial_key(key))


def _partial_key(key: Hashable) -> tuple[Hashable, ...]:
    return ("partial", key)


def keep_partial(key: Hashable, parts: Any) -> Any:
    """Keep ``parts`` as what is done so far of the unfinished result ``key`` and return it.

    ``parts`` is a container the computation fills as each of its parts (a batch of rows)
    finishes, so Stop or a rerun keeps those parts. It lives in the same store as the finished
    results (and is evicted like them); :func:`put_result` for ``key`` drops it.
    """
    result_store().put(_partial_key(key), parts)
    return parts


def partial(key: Hashable) -> Any:
    """The parts kept so far of the unfinished result ``key`` (:func:`keep_partial`), or ``None``."""
    return result_store().get(_partial_key(key))


def current_model() -> ModelBundle | None:
    """The model chosen in the sidebar, or ``None`` when none could be loaded."""
    return st.session_state.get(MODEL_KEY)


def current_image() -> CurrentImage | None:
    """The image chosen in the sidebar, or ``None`` before one was chosen."""
    return st.session_state.get(IMAGE_KEY)


def current_target() -> int | None:
    """The class index to explain (the predicted class unless the user chose one)."""
    return st.session_state.get(TARGET_KEY)


def current_uploaded_model() -> ModelBundle | None:
    """The checkpoint this session uploaded, or ``None`` (never shared with other sessions)."""
    return st.session_state.get(UPLOADED_MODEL_KEY)


def session_models() -> dict[str, ModelBundle]:
    """Models made in this session (the Clever-Hans lab's corrections), by menu key; the
    sidebar lists them after the shipped models so every page can use them."""
    return st.session_state.setdefault(SESSION_MODELS_KEY, {})


def keep_session_model(key: str, bundle: ModelBundle) -> None:
    """Offer ``bundle`` in the sidebar's model menu for the rest of the session."""
    session_models()[key] = bundle


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def shared_model(name: str, *, pretrained: bool = True) -> ModelBundle:
    """A model by name, loaded once per server and shared by every session; never mutate it.

    ``pretrained=False`` builds random weights (torchvision models). Load errors are not
    cached: a later call tries again.
    """
    from xaicore.models.loading import load_model

    if name in ("default", "clever-hans", "xray"):  # the embedded models: no weight choice
        return load_model(name)
    return load_model(name, weights="default" if pretrained else None)


@st.cache_data(max_entries=1, show_spinner=False)
def sample_names() -> list[str]:
    """Names of the sample images shipped with xaicore."""
    from xaicore.data.samples import list_samples

    return list(list_samples())


@st.cache_data(max_entries=64, show_spinner=False)
def sample_image(name: str) -> CurrentImage:
    """A sample image with its ground truth, as the current image's data."""
    from xaicore.data.images import image_hash
    from xaicore.data.samples import load_sample

    sample = load_sample(name)
    array = np.asarray(getattr(sample.image, "array", sample.image), dtype=np.float32)
    masks = sample.masks
    return CurrentImage(
        array=array,
        name=name,
        hash=image_hash(array),
        source="sample",
        label=sample.label,
        masks=masks,
        mask_labels=tuple(sample.mask_labels),
        description=sample.description,
    )


def predictions(bundle: ModelBundle, image: CurrentImage, *, k: int = 5) -> tuple[Prediction, ...]:
    """Top-``k`` classes of ``bundle`` for ``image`` by softmax probability.

    One forward pass (under the bundle's lock), done once per session, model and image.
    """
    key = result_key("predictions", fingerprint=bundle.fingerprint, image=image.hash, k=k)
    found = get_result(key)
    if found is None:
        found = top_predictions(bundle, bundle.logits(bundle.to_input(image.array))[0], k=k)
        put_result(key, found)
    return found


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - values that do not compare (arrays) count as different
        return False


def kept(
    key: str,
    *,
    default: Any = None,
    options: Sequence[Any] | None = None,
    scope: Any = None,
    form: bool = False,
) -> dict[str, Any]:
    """Keyword arguments (``key``, ``on_change``) for a value widget whose value stays the user's.

    The value lives in a session entry that Streamlit never cleans (:data:`KEPT_KEY`), not in
    the widget: Streamlit forgets a widget's value in every run that does not draw it (another
    page, a fragment rerun elsewhere), and may hand back its default when it is drawn again.
    Before the widget is drawn its key is seeded from the kept value; the user's changes are
    written back by the ``on_change`` callback, so only the user changes the kept value.

    ``default`` is the value before the user chose one. ``options``: a kept value no longer
    among them falls back to ``default`` (lists keep their items that still are). ``scope``:
    what the value belongs to (a model fingerprint); a new scope starts again from
    ``default``, the same scope never does. ``form=True`` for widgets inside ``st.form``
    (callbacks are not allowed there): :func:`commit_kept` writes them back on submit.

    Use it as ``st.multiselect("Methods", names, **state.kept(KEY, default=names))`` and never
    together with the widget's own ``value``/``index``/``default`` argument.
    """
    store = _kept_store()
    frozen = freeze(scope)
    entry = store.get(key)
    if entry is not None and _same(entry[1], frozen):
        value = entry[0]
    elif entry is None and key in st.session_state:  # set before the first draw (code, tests)
        value = st.session_state[key]
    else:
        value = default
    if options is not None:
        value = _within(value, list(options), default)
    store[key] = (value, frozen)
    if value is None and options is not None and len(options) and options[0] is None:
        st.session_state.pop(key, None)  # the widget's own first option shows None as it should
    else:  # every run: the session may still report a value the widget drawn now does not have
        st.session_state[key] = value
    if form:
        return {"key": key}
    return {"key": key, "on_change": _write_back, "args": (key, frozen)}


def set_kept(key: str, value: Any) -> None:
    """Make ``value`` the kept value of the widget ``key`` (a choice made by other means, such
    as a click on a chart); it shows the next time the widget is drawn."""
    store = _kept_store()
    entry = store.get(key)
    store[key] = (value, entry[1] if entry is not None else None)


def kept_value(key: str, default: Any = None) -> Any:
    """The kept value of the widget ``key`` (also while the widget is not drawn)."""
    entry = _kept_store().get(key)
    return default if entry is None else entry[0]


def commit_kept(keys: Sequence[str]) -> None:
    """Write back the values of form widgets (``kept(..., form=True)``); a form submit callback."""
    for key in keys:
        if key in st.session_state:
            set_kept(key, st.session_state[key])


def _write_back(key: str, scope: Hashable) -> None:
    if key in st.session_state:
        _kept_store()[key] = (st.session_state[key], scope)


def _kept_store() -> dict[str, tuple[Any, Hashable]]:
    store = st.session_state.get(KEPT_KEY)
    if not isinstance(store, dict):
        store = {}
        st.session_state[KEPT_KEY] = store
    return store


def _within(value: Any, options: list[Any], default: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [v for v in value if any(_same(v, o) for o in options)]
    if any(_same(value, o) for o in options):
        return value
    return default


def forget_if_not_in(key: str, options: Any) -> None:
    """Drop a widget value that is no longer among the widget's options."""
    if key in st.session_state:
        value = st.session_state[key]
        values = value if isinstance(value, list) else [value]
        if not all(v in options for v in values):
            del st.session_state[key]


@contextmanager
def guarded(what: str = "page") -> Iterator[None]:
    """Show errors as one sentence instead of a traceback.

    :class:`~xaicore.errors.XaiError` messages are written for people and shown as they are;
    anything else is logged on the server with its traceback and replaced by a plain sentence.
    Streamlit's own control flow (reruns, ``st.stop``) is not an ``Exception`` and passes.
    """
    try:
        yield
    except XaiError as exc:
        st.error(plain(exc))
    except Exception:  # the browser must never see a traceback
        LOG.exception("unexpected error in %s", what)
        st.error(UNEXPECTED)
