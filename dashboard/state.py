"""Per-session state of the dashboard: the current selection, a bounded result store, models.

The sidebar (:mod:`dashboard.sidebar`) writes the selection; pages read it with
:func:`current_model`, :func:`current_image` and :func:`current_target`, and keep finished
computations with :func:`put_result` / :func:`get_result`. The result store is a per-session
LRU of :data:`RESULT_CAPACITY` entries, so a long session's memory levels off. A result is put
only once its computation has finished: a rerun that interrupts a run stores nothing partial.

Models are cached with ``st.cache_resource`` and shared by every session: nothing here or in
the pages may change them (xaicore works on private copies). A checkpoint uploaded by a user
stays in that user's session only.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st
import torch

from dashboard.safe_text import plain
from xaicore.errors import XaiError
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

UNEXPECTED = "Something went wrong on the server and this part of the page could not be shown; try again or choose other settings."


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
        return tuple(sorted(freeze(v) for v in value))
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
    """Keep a finished result in this session (least recently used ones are evicted)."""
    result_store().put(key, value)


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


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def shared_model(name: str, *, pretrained: bool = True) -> ModelBundle:
    """A model by name, loaded once per server and shared by every session; never mutate it.

    ``pretrained=False`` builds random weights (torchvision models). Load errors are not
    cached: a later call tries again.
    """
    from xaicore.models.loading import load_model

    if name == "default":
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
        logits = bundle.logits(bundle.to_input(image.array))[0]
        probs = torch.softmax(logits.float(), dim=-1)
        values, indices = probs.topk(min(k, probs.numel()))
        found = tuple(
            Prediction(index=int(i), label=bundle.labels[int(i)], probability=float(p))
            for p, i in zip(values.tolist(), indices.tolist())
        )
        put_result(key, found)
    return found


def keep_widget_values(prefix: str) -> None:
    """Keep the values of widgets keyed ``prefix...`` across page switches and reruns in which
    they are not drawn.

    Streamlit forgets a widget's value when a run does not draw it (another page is shown);
    re-assigning the value through the Session State API makes it the user's, so the widget
    finds it when it is drawn again. Call at the top of a page, before its widgets. Only value
    widgets may use the prefix: buttons, file uploaders and downloads refuse assigned values.
    """
    for key in list(st.session_state.keys()):
        if isinstance(key, str) and key.startswith(prefix):
            st.session_state[key] = st.session_state[key]


def forget_if_not_in(key: str, options: Any) -> None:
    """Drop a kept widget value that is no longer among the widget's options."""
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
    except Exception:  # noqa: BLE001 - the browser must never see a traceback
        LOG.exception("unexpected error in %s", what)
        st.error(UNEXPECTED)
