"""The data-set evaluation on Ray: the rows of :mod:`xaicore.evaluation.rows`, computed by a pool
of actors that each hold the model, on one machine or a cluster.

How it runs
-----------
The driver (the process that calls :class:`RayEngine`) checks the settings as the local engine
does, puts the model once into Ray's object store and starts a pool of actors. Each actor loads
the model once, on a GPU of its own when the cluster has GPUs (``num_gpus`` per actor) and on the
CPU otherwise. The driver keeps a queue of the batches with missing rows (the same fixed batches
as :func:`~xaicore.evaluation.rows.iter_rows`: batch ``b`` holds images ``b * batch_size`` to
``(b + 1) * batch_size - 1``), ships each batch's images through the object store and hands every
actor up to ``in_flight`` batches at a time (while one batch computes, the next one's images are
already on their way, so reading the images overlaps the explaining). The rows of a batch go,
as soon as its result arrives, to ``on_rows``, which the run folder
(:func:`~xaicore.evaluation.store.evaluate_in_folder`) appends to its ``rows.jsonl``.

Why actors fed by a queue, not Ray Data's ``map_batches``
---------------------------------------------------------
* **The same rows as the local engine.** A row depends on its batch: stochastic methods draw
  their noise per batch and the random control is seeded by the batch's first image. Ray Data
  cuts batches at block boundaries as it pleases (a batch may be smaller than ``batch_size``),
  so its batches would not be the local engine's. Here a task *is* one of those batches.
* **Resume and single writer.** The queue holds only batches with missing rows, and only the
  driver writes the store, one batch's rows at a time, keeping rows it already has out; so the
  store never holds a duplicate, and the store's own reader cuts a half-written last line.
* **Failures.** An actor that dies (process killed, node lost) is started again by Ray
  (``max_restarts``) and its unfinished batches are sent again (``max_task_retries``). A batch
  is idempotent (its rows depend only on the model, the images and the settings), so a retried
  batch gives the very rows the lost one would have given; its result reaches the driver once.
* **Light.** Plain actors need only ``ray`` (no pyarrow/pandas stack of Ray Data) and start in
  a few seconds.

Connecting
----------
``address=None`` starts a private local Ray for the run and stops it afterwards; ``"auto"``
joins the cluster this machine belongs to (``ray start --head`` started one); ``"HOST:PORT"``
joins the cluster whose head listens there; ``"ray://HOST:10001"`` goes through Ray Client. A
session already started in this process (``ray.init``) is used as it is. The nodes of a cluster
need the same xaicore and torch installed as the driver: the model travels as a Python object.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from xaicore.errors import EngineUnavailable, ParameterError
from xaicore.evaluation.rows import (
    EvalRow,
    EvalSettings,
    Evaluation,
    ProgressFn,
    batch_plan,
    batch_rows,
    checked_items,
    in_order,
    summarize,
)
from xaicore.models.bundle import ModelBundle, fingerprint

ACTOR_PREFIX = "xai-evaluate"
DEFAULT_IN_FLIGHT = 2  # batches handed to one actor at a time: one computing, one arriving
MAX_RESTARTS = 4  # a dead actor is started again (and loads the model again) up to this often
TASK_RETRIES = 4  # a batch whose actor died is sent again up to this often


def ray_module() -> Any:
    """The ``ray`` package, or :class:`EngineUnavailable` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise EngineUnavailable(
            "The Ray engine needs Ray, which is not installed: pip install 'xaicore[ray]' (or use the local engine)."
        ) from exc
    return ray


@contextmanager
def ray_session(
    address: str | None = None, *, num_cpus: int | None = None, object_store_memory: int | None = None
) -> Iterator[Any]:
    """Ray, connected for the duration of the block (see the module docstring for ``address``).

    A session already running in this process is used and left running; one started or joined
    here is shut down at the end. ``num_cpus`` and ``object_store_memory`` size a local start.
    """
    ray = ray_module()
    if ray.is_initialized():
        yield ray
        return
    options: dict[str, Any] = {"log_to_driver": False}
    if address:
        options["address"] = address
    else:  # "local": a new instance, even where `ray start` left a cluster that ray.init() would join
        options.update(
            address="local", include_dashboard=False, num_cpus=num_cpus, object_store_memory=object_store_memory
        )
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray"
        raise EngineUnavailable(
            f"Could not start or reach {where}: {exc}. Check the address (auto, HOST:PORT or ray://HOST:10001) "
            "and that the cluster is running (ray status)."
        ) from exc
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class PortableModel:
    """A bundle as it travels to the actors: every field but the lock, the network on the CPU."""

    values: dict[str, Any]

    @classmethod
    def of(cls, bundle: ModelBundle) -> PortableModel:
        with bundle.lock:
            model = copy.deepcopy(bundle.model).cpu()
        values = {f.name: getattr(bundle, f.name) for f in dataclasses.fields(bundle) if f.init and f.name != "lock"}
        values["model"] = model
        return cls(values)

    def build(self, device: torch.device) -> ModelBundle:
        """The bundle on ``device``, checked against its fingerprint."""
        values = dict(self.values)
        model = copy.deepcopy(values.pop("model")).to(device).eval()
        bundle = ModelBundle(model=model, **values)
        if fingerprint(bundle.model) != bundle.fingerprint:
            raise EngineUnavailable(
                f"The copy of {bundle.name} on a Ray worker has other weights than the driver's; "
                "install the same xaicore and torch versions on every node."
            )
        return bundle


class Explainer:
    """One actor of the pool: loads the model once, then computes batches of rows."""

    def __init__(self, model: Sequence[Any], settings: EvalSettings) -> None:
        ray = ray_module()
        self.device = torch.device("cuda") if ray.get_gpu_ids() else torch.device("cpu")
        # ``model`` is ``[ref]`` of a PortableModel: a reference inside a list is not resolved by
        # Ray, so the actor fetches it here, again after each restart, while the driver holds it.
        self.bundle = ray.get(model[0]).build(self.device)
        self.settings = settings

    def where(self) -> str:
        """The device the actor computes on (answers once the model is loaded)."""
        return str(self.device)

    def rows(self, start: int, chunk: Sequence[Any], labels: Sequence[int | None], pending: Sequence[str]):
        return batch_rows(self.bundle, chunk, labels, start, self.settings, pending)


@functools.cache
def _remote_explainer() -> Any:
    return ray_module().remote(Explainer)


@dataclass(frozen=True)
class RayEngine:
    """The evaluation on Ray; called like :func:`~xaicore.evaluation.rows.evaluate`.

    Parameters
    ----------
    address:
        Where Ray runs (see the module docstring); ``None`` starts a local Ray for the run.
    actors:
        Actors in the pool. ``None``: one per GPU of the cluster when it has GPUs, else one per
        CPU; never more than the batches to compute.
    gpus_per_actor:
        GPUs each actor reserves. ``None``: 1 when the cluster has GPUs, else 0 (CPU actors).
    cpus_per_actor:
        CPUs each actor reserves; on CPU actors also its PyTorch threads.
    in_flight:
        Batches handed to one actor at a time.
    num_cpus, object_store_memory:
        Size of a local Ray started for the run (``address=None``); ignored otherwise.
    """

    address: str | None = None
    actors: int | None = None
    gpus_per_actor: float | None = None
    cpus_per_actor: float = 1.0
    in_flight: int = DEFAULT_IN_FLIGHT
    num_cpus: int | None = None
    object_store_memory: int | None = None

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise ParameterError(f"actors must be at least 1; got {self.actors}.")
        if self.gpus_per_actor is not None and self.gpus_per_actor < 0:
            raise ParameterError(f"gpus_per_actor must be 0 or more; got {self.gpus_per_actor}.")
        if self.cpus_per_actor <= 0:
            raise ParameterError(f"cpus_per_actor must be above 0; got {self.cpus_per_actor}.")
        if self.in_flight < 1:
            raise ParameterError(f"in_flight must be at least 1 batch; got {self.in_flight}.")

    def __call__(
        self,
        bundle: ModelBundle,
        image_set: Any,
        settings: EvalSettings,
        *,
        done_rows: Iterable[EvalRow] = (),
        on_rows: Callable[[Sequence[EvalRow]], None] | None = None,
        progress: ProgressFn | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Evaluation:
        """Compute the rows missing from ``done_rows`` on Ray and summarize them all.

        The arguments mean what they mean for :func:`~xaicore.evaluation.rows.evaluate`;
        ``should_stop()`` is asked after every batch that arrives: a true answer sends no more
        batches, and the rows of those already sent are still kept.
        """
        started = time.perf_counter()
        items, labels = checked_items(bundle, image_set, settings)
        rows = {r.key: r for r in done_rows}
        plan = [(a, b, pending) for a, b, pending in batch_plan(settings, set(rows)) if pending]
        done_images = settings.n_images - sum(b - a for a, b, _ in plan)
        device = str(bundle.device)
        if plan:
            with ray_session(self.address, num_cpus=self.num_cpus, object_store_memory=self.object_store_memory) as ray:
                device = _Dispatch(self, ray, bundle, settings, items, labels, rows, done_images).run(
                    plan, on_rows=on_rows, progress=progress, should_stop=should_stop
                )
        ordered = in_order(rows.values(), settings)
        return Evaluation(ordered, summarize(ordered, settings, device=device), time.perf_counter() - started)

    def pool_shape(self, ray: Any, batches: int) -> tuple[int, float]:
        """``(actors, gpus per actor)`` for a run of ``batches`` on the connected cluster."""
        resources = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0.0))
        per_gpu = self.gpus_per_actor if self.gpus_per_actor is not None else (1.0 if gpus >= 1 else 0.0)
        if self.actors is not None:
            wanted = self.actors
        elif per_gpu > 0:
            wanted = max(1, int(gpus // per_gpu))
        else:
            wanted = max(1, int(float(resources.get("CPU", 1.0)) // self.cpus_per_actor))
        return max(1, min(wanted, batches)), per_gpu


class _Dispatch:
    """One run's pool and queue: batches out to the actors, rows back to ``on_rows``."""

    def __init__(
        self,
        engine: RayEngine,
        ray: Any,
        bundle: ModelBundle,
        settings: EvalSettings,
        items: Sequence[Any],
        labels: Sequence[int | None],
        rows: dict[tuple[int, str], EvalRow],
        done_images: int,
    ) -> None:
        self.engine, self.ray, self.bundle, self.settings = engine, ray, bundle, settings
        self.items, self.labels, self.rows, self.done_images = items, labels, rows, done_images

    def run(
        self,
        plan: Sequence[tuple[int, int, list[str]]],
        *,
        on_rows: Callable[[Sequence[EvalRow]], None] | None,
        progress: ProgressFn | None,
        should_stop: Callable[[], bool] | None,
    ) -> str:
        """Send every batch of ``plan`` (until ``should_stop``); returns the actors' device(s)."""
        total = self.settings.n_images
        if progress is not None:
            progress(self.done_images, total, "starting the Ray actors")
        actors, devices = self._start(len(plan))
        try:
            queue = deque(plan)
            load = dict.fromkeys(range(len(actors)), 0)
            flying: dict[Any, tuple[int, int, int]] = {}  # result ref -> (actor, start, stop)
            stopping = False
            while flying or (queue and not stopping):
                while queue and not stopping:
                    index = min(load, key=load.__getitem__)
                    if load[index] >= self.engine.in_flight:
                        break
                    start, stop, pending = queue.popleft()
                    chunk = self.ray.put(list(self.items[start:stop]))
                    ref = actors[index].rows.remote(start, chunk, list(self.labels[start:stop]), pending)
                    flying[ref] = (index, start, stop)
                    load[index] += 1
                ready, _ = self.ray.wait(list(flying), num_returns=1)
                index, start, stop = flying.pop(ready[0])
                load[index] -= 1
                self._keep(self._result(ready[0]), on_rows)
                self.done_images += stop - start
                if progress is not None:
                    progress(self.done_images, total, f"images {start + 1}-{stop} done")
                if should_stop is not None and not stopping and queue and should_stop():
                    stopping = True
            return ", ".join(sorted(set(devices)))
        finally:
            for actor in actors:
                self.ray.kill(actor)

    def _start(self, batches: int) -> tuple[list[Any], list[str]]:
        """The pool, each actor with its model loaded, and the device of each."""
        count, per_gpu = self.engine.pool_shape(self.ray, batches)
        self.model_ref = self.ray.put(PortableModel.of(self.bundle))  # held for restarts
        run = uuid.uuid4().hex[:8]
        actor_class = _remote_explainer()
        actors = [
            actor_class.options(
                name=f"{ACTOR_PREFIX}-{run}-{i}",
                num_cpus=self.engine.cpus_per_actor,
                num_gpus=per_gpu,
                max_restarts=MAX_RESTARTS,
                max_task_retries=TASK_RETRIES,
            ).remote([self.model_ref], self.settings)
            for i in range(count)
        ]
        devices = [self._result(actor.where.remote()) for actor in actors]  # each has loaded the model
        return actors, devices

    def _result(self, ref: Any) -> Any:
        """``ray.get(ref)``; an xaicore error raised in an actor comes out as itself."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(getattr(exc, "cause", None), Exception) else exc
            if isinstance(cause, EngineUnavailable | ParameterError):
                raise cause from None
            raise
        except self.ray.exceptions.RayActorError as exc:
            raise EngineUnavailable(
                f"A Ray actor of the evaluation died {MAX_RESTARTS} times or could not start ({exc}); "
                "the rows computed so far are kept: run again to continue."
            ) from exc

    def _keep(self, rows: Sequence[EvalRow], on_rows: Callable[[Sequence[EvalRow]], None] | None) -> None:
        new = [r for r in rows if r.key not in self.rows]
        for row in new:
            self.rows[row.key] = row
        if new and on_rows is not None:
            on_rows(new)
