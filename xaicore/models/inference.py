"""The fast inference copy of a model, for forward-only workloads.

:func:`inference_copy` gives a frozen TorchScript copy of a network (channels-last, its linear
head run apart in row blocks), checked against the eager network before use and cached per
network and weights; :func:`run_in_workers` runs a chunked forward-only job on a few long-lived
CPU worker threads. :func:`forward_logits` puts the two together: the logits of many inputs, in
memory-bounded chunks, through the copy where there is a checked one, else through the plain
model. Insertion/deletion curves, Occlusion and the CO scores (over image sets too) run their
forward passes through it; :func:`plain_forwards` turns the copy off for a block of code.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from xaicore.errors import OutOfMemory, ParameterError
from xaicore.models.rewrite import pool_before_relu, split_at_head
from xaicore.runtime.device import run_chunked


def _parameter_state(module: nn.Module) -> tuple:
    """Identity and in-place version of every parameter and buffer: changes whenever the weights do."""
    return tuple(
        (name, t.data_ptr(), t._version, tuple(t.shape), t.dtype, t.device)
        for name, t in (*module.named_parameters(), *module.named_buffers())
    )


_INFERENCE_COPIES: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, Any]] = weakref.WeakKeyDictionary()


_INFERENCE_LOCK = threading.Lock()


def forget_inference_copy(net: nn.Module) -> None:
    """Forget the cached inference copy of ``net``; a later call does without one."""
    with _INFERENCE_LOCK:
        _INFERENCE_COPIES[net] = (_parameter_state(net), None)


def clear_inference_copies() -> None:
    """Forget every cached inference copy (see :func:`inference_copy`); the next call makes it again."""
    with _INFERENCE_LOCK:
        _INFERENCE_COPIES.clear()


def _jit_inference(net: nn.Module, example: torch.Tensor) -> Any:
    """TorchScript trace of ``net`` on ``example``, frozen and optimized for inference (batch
    norm folded into convolutions, oneDNN convolutions with weights pre-packed, activations
    kept in oneDNN's layout between layers); ``None`` when any step fails."""
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.compile
            # A tracer warning (a tensor turned into a Python bool or number, say) means the
            # trace may hold one branch of data-dependent code: no copy then.
            warnings.simplefilter("error", torch.jit.TracerWarning)
            traced = torch.jit.trace(net, example, check_trace=False)
            return torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
    except Exception:  # noqa: BLE001 - any model TorchScript cannot take runs plainly
        return None


@dataclass(frozen=True)
class InferenceCopy:
    """An inference-optimized private copy of a network: ``head(trunk(x))``, or ``trunk(x)``
    alone when ``head`` is ``None``.

    ``scripted`` says whether the parts are TorchScript (which takes any memory layout and
    may run from several threads at once) or the fx-rewritten network itself. With a head,
    callers run the trunk on a few images at a time and the head on up to :data:`HEAD_ROWS`
    rows (see :func:`inference_copy`).
    """

    trunk: Any
    head: Any = None
    scripted: bool = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        features = self.trunk(x)
        return features if self.head is None else self.head(features)


HEAD_ROWS = 256  # feature rows per pass of a copy's head


def _scripted_copy(net: nn.Module, example: torch.Tensor) -> InferenceCopy | None:
    """``net`` as TorchScript, cut into trunk and head when it has a fully connected head
    (:func:`split_at_head`), else whole; ``None`` when TorchScript cannot take it."""
    parts = split_at_head(net)
    if parts is not None:
        trunk = _jit_inference(parts[0], example)
        if trunk is not None:
            with torch.no_grad():
                features = parts[0](example)
            head = _jit_inference(parts[1], features)
            if head is not None:
                return InferenceCopy(trunk, head)
    whole = _jit_inference(net, example)
    return None if whole is None else InferenceCopy(whole)


def inference_copy(
    net: nn.Module, example: torch.Tensor, check: torch.Tensor, expected: torch.Tensor
) -> InferenceCopy | None:
    """An inference-optimized private copy of ``net`` (CPU only), or ``None`` to run ``net`` itself.

    Made once per module and weights (cached by the module, rebuilt when any parameter or
    buffer changes), traced on ``example`` and accepted only when its softmax on ``check`` (a
    batch of another size than ``example``, so a batch size baked into the trace shows) is
    within 1e-5 of ``expected`` (the plain model's softmax on ``check``). On CUDA, or when
    TorchScript cannot take the model, the plain model runs. The copy replays the model's
    tensor operations only: Python side effects of its ``forward`` (counters, checks that
    trace without a tracer warning) do not run; pass ``optimize=False`` to
    :func:`insertion_deletion` for such models.

    A network with a fully connected head is copied in two parts (:func:`split_at_head`):
    the convolutions run fastest on a few images at a time, the head on many rows at a time
    (figures in ``docs/benchmarks.md``).
    """
    if not _may_copy(net, example.device):
        return None
    state = _parameter_state(net)
    known, cached = _cached_copy(net, state)
    if known:
        return cached
    fast = None
    reordered = pool_before_relu(net)
    candidates = (
        lambda: _scripted_copy(reordered or net, example),
        lambda: None if reordered is None else InferenceCopy(reordered, scripted=False),
    )
    for make in candidates:
        candidate = make()
        if candidate is not None and _agrees(candidate, check, expected):
            fast = candidate
            break
    with _INFERENCE_LOCK:
        _INFERENCE_COPIES[net] = (state, fast)
    return fast


def cached_inference_copy(net: nn.Module) -> InferenceCopy | None:
    """The copy of ``net`` at its present weights that the last forward-only job made or used, if any."""
    return _cached_copy(net, _parameter_state(net))[1]


def _may_copy(net: nn.Module, device: torch.device) -> bool:
    """Whether an inference copy of ``net`` on ``device`` may be made at all (CPU with oneDNN, eval mode)."""
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    return not any(m.training for m in net.modules())  # batch statistics, dropout: nothing to freeze


def _cached_copy(net: nn.Module, state: tuple) -> tuple[bool, InferenceCopy | None]:
    """``(True, copy)`` when a copy (or ``None``: no copy works) is cached for ``net`` at these weights."""
    with _INFERENCE_LOCK:
        cached = _INFERENCE_COPIES.get(net)
    if cached is not None and cached[0] == state:
        return True, cached[1]
    return False, None


def _agrees(candidate: Any, check: torch.Tensor, expected: torch.Tensor) -> bool:
    try:
        with torch.no_grad():
            got = torch.softmax(candidate(check).float(), dim=1)
    except Exception:  # noqa: BLE001 - a copy that cannot run is not used
        return False
    return got.shape == expected.shape and bool((got - expected).abs().max() <= _COPY_TOLERANCE)


_COPY_TOLERANCE = 1e-5


CPU_WORKERS: int | None = None  # None: see cpu_workers


MAX_THREADS_FOR_WORKERS = 4


def cpu_workers(device: torch.device, batch_size: int) -> int:
    """Worker threads for the TorchScript copy on the CPU: one per intra-op thread when there
    are at most ``MAX_THREADS_FOR_WORKERS`` of them, else one: with few threads, single-threaded
    workers beat one multi-threaded stream; with many, intra-op parallelism has enough work per
    thread (figures in ``docs/benchmarks.md``).
    """
    if device.type != "cpu":
        return 1
    threads = torch.get_num_threads()
    if CPU_WORKERS is not None:
        wanted = CPU_WORKERS
    else:
        wanted = threads if threads <= MAX_THREADS_FOR_WORKERS else 1
    return max(1, min(wanted, threads, batch_size))


_WORKER_POOLS: dict[tuple[int, int, int], ThreadPoolExecutor] = {}


_WORKER_POOLS_LOCK = threading.Lock()


def worker_pool(workers: int, threads_each: int) -> ThreadPoolExecutor:
    """A long-lived pool of ``workers`` threads with ``threads_each`` intra-op threads each.

    Long-lived because ``torch.set_num_threads`` is not free: besides the calling thread's
    count it sets the count new threads start from (process-wide) and clears oneDNN's cache of
    compiled convolutions. The pool's threads set theirs once, when the pool is made (all of
    them at once, behind a barrier); the process-wide count is then put back.
    """
    key = (os.getpid(), workers, threads_each)  # a forked child makes its own: it has no threads
    with _WORKER_POOLS_LOCK:
        pool = _WORKER_POOLS.get(key)
        if pool is None:
            threads = torch.get_num_threads()
            pool = ThreadPoolExecutor(workers, thread_name_prefix="xaicore-curves")
            barrier = threading.Barrier(workers)

            def start() -> None:
                # PyTorch sets a thread's count lazily, from the process-wide one, at its first
                # query: query first, or the count put back below would end up here too.
                torch.get_num_threads()
                torch.set_num_threads(threads_each)
                barrier.wait()

            try:
                for future in [pool.submit(start) for _ in range(workers)]:
                    future.result()
            finally:
                torch.set_num_threads(threads)
            _WORKER_POOLS[key] = pool
        return pool


def run_in_workers(fn, total: int, *, chunk: int, workers: int) -> torch.Tensor:
    """``run_chunked(fn, total)`` split into ``workers`` contiguous ranges run by the threads
    of :func:`worker_pool`, each with ``threads // workers`` intra-op threads and
    ``chunk // workers`` items per call, concatenated in order."""
    if workers <= 1:
        return run_chunked(fn, total, chunk=chunk, combine=torch.cat)
    per_call = max(1, chunk // workers)
    bounds = np.linspace(0, total, workers + 1).round().astype(int)

    def work(begin: int, end: int) -> torch.Tensor:
        with torch.no_grad():
            return run_chunked(lambda a, b: fn(begin + a, begin + b), end - begin, chunk=per_call, combine=torch.cat)

    pool = worker_pool(workers, max(1, torch.get_num_threads() // workers))
    futures = [pool.submit(work, int(a), int(b)) for a, b in zip(bounds, bounds[1:]) if b > a]
    wait(futures)  # all of them, before an error of one is raised
    return torch.cat([f.result() for f in futures])


# ----------------------------------------------------------------------------- forward-only logits


_PLAIN_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("xaicore_plain_forwards", default=False)


@contextlib.contextmanager
def plain_forwards() -> Iterator[None]:
    """Within this block (in this thread), :func:`forward_logits` runs the plain model, never a copy.

    For models whose ``forward`` has Python side effects (a copy replays tensor operations
    only), and to time or test the plain path against the copy.
    """
    token = _PLAIN_ONLY.set(True)
    try:
        yield
    finally:
        _PLAIN_ONLY.reset(token)


@dataclass(frozen=True)
class Forwards:
    """What :func:`forward_logits` computed, and how.

    ``values`` has one row per input: its logits, or what ``reduce`` made of them.
    ``inference_copy`` says whether the copy ran, ``head_apart`` whether it ran its fully
    connected head on :data:`HEAD_ROWS` rows at a time, ``cpu_workers`` on how many threads.
    """

    values: torch.Tensor
    inference_copy: bool = False
    head_apart: bool = False
    cpu_workers: int = 1

    def how(self) -> dict[str, Any]:
        return {"inference_copy": self.inference_copy, "head_apart": self.head_apart, "cpu_workers": self.cpu_workers}


CHECK_INPUTS = 8  # at most this many inputs check a new copy against the plain model


Inputs = Callable[[int, int], torch.Tensor]
Reduce = Callable[[torch.Tensor, int, int], torch.Tensor]


def forward_logits(
    net: nn.Module,
    inputs: torch.Tensor | Inputs,
    *,
    total: int | None = None,
    batch_size: int,
    reduce: Reduce | None = None,
    check: tuple[torch.Tensor, torch.Tensor] | None = None,
    optimize: bool = True,
    plain_layout: torch.memory_format = torch.contiguous_format,
) -> Forwards:
    """The logits of many inputs, without gradients, in chunks of ``batch_size`` (halved on
    out-of-memory), through ``net``'s inference copy when it has a checked one, else through
    ``net`` itself.

    Parameters
    ----------
    net:
        The model, in eval mode for a copy to be made. It is only run (to check a new copy and
        to trace it), never changed; callers hold its lock where it is shared.
    inputs:
        A batch ``(N, ...)``, or ``make(start, stop)`` giving inputs ``start:stop`` of ``total``
        (so no more than a chunk of them exists at a time).
    total:
        The number of inputs; only (and then required) with ``make``.
    batch_size:
        Inputs per forward pass of the plain model and of the copy's trunk (split between its
        worker threads); a copy with its head apart runs that head on up to
        ``max(batch_size, HEAD_ROWS)`` rows per worker.
    reduce:
        ``reduce(logits, start, stop)`` turns the logits of inputs ``start:stop`` into what is
        kept of them (the target's logit, say), so the logits of all inputs never exist at once.
    check:
        ``(inputs, softmax)``: at least two inputs and the plain model's softmax on them, against
        which a new copy is checked (:func:`inference_copy`). By default the first
        ``min(total, CHECK_INPUTS)`` inputs go through the plain model for it, once per model and
        weights.
    optimize:
        False runs the plain model (as does :func:`plain_forwards`, on the GPU, for a model in
        training mode, for fewer than two inputs, and when no copy agrees with the model).
    plain_layout:
        Memory layout the plain model gets its inputs in (``torch.channels_last`` suits
        convolutions on the CPU; the default passes them as they are made).

    A copy that fails on some chunk (other than for memory) is dropped and the plain model runs.
    """
    if isinstance(inputs, torch.Tensor):
        if total is not None:
            raise ParameterError("Give total only with a function making the inputs, not with a tensor.")
        batch, total = inputs, len(inputs)

        def sliced(start: int, stop: int) -> torch.Tensor:
            return batch[start:stop]

        make: Callable[[int, int], torch.Tensor] = sliced
    elif total is None:
        raise ParameterError("Give total, the number of inputs the function makes.")
    else:
        make = inputs
    if batch_size < 1:
        raise ParameterError(f"batch_size must be at least 1; got {batch_size}.")
    with torch.no_grad():
        fast, device = None, None
        if optimize and not _PLAIN_ONLY.get() and total >= 2:
            fast, device = _checked_copy(net, make, total, batch_size=batch_size, check=check, layout=plain_layout)
        if fast is not None:
            # TorchScript takes any layout (it converts to oneDNN's own) and may run from several
            # threads at once; the fx-only copy runs the model's own modules.
            workers = cpu_workers(device, batch_size) if fast.scripted else 1  # type: ignore[arg-type]
            layout = torch.contiguous_format if fast.scripted else torch.channels_last
            if fast.head is None:
                run, per_call = _chunks(fast.trunk, make, layout, reduce), batch_size
            else:  # the trunk on batch_size / workers inputs at a time, the head on HEAD_ROWS rows
                per_trunk = max(1, batch_size // workers)
                run = _chunks(fast.trunk, make, layout, reduce, head=fast.head, per_trunk=per_trunk)
                per_call = max(batch_size, HEAD_ROWS) * workers
            try:
                values = run_in_workers(run, total, chunk=per_call, workers=workers)
            except OutOfMemory:
                raise
            except Exception:  # noqa: BLE001 - a copy that fails on some batch is dropped
                forget_inference_copy(net)
            else:
                return Forwards(values, inference_copy=True, head_apart=fast.head is not None, cpu_workers=workers)
        values = run_chunked(_chunks(net, make, plain_layout, reduce), total, chunk=batch_size, combine=torch.cat)
    return Forwards(values)


def _checked_copy(
    net: nn.Module,
    make: Inputs,
    total: int,
    *,
    batch_size: int,
    check: tuple[torch.Tensor, torch.Tensor] | None,
    layout: torch.memory_format,
) -> tuple[InferenceCopy | None, torch.device]:
    """``net``'s cached copy, or a new one checked on ``check`` (made from the first inputs when
    ``None``), or ``None``; and the device of the inputs."""
    if check is None:
        count = min(total, max(2, min(batch_size, CHECK_INPUTS)))
        sample = make(0, count)
    else:
        sample = check[0]
    if not _may_copy(net, sample.device):
        return None, sample.device
    known, cached = _cached_copy(net, _parameter_state(net))
    if known:
        return cached, sample.device
    if check is None:
        expected = run_chunked(
            lambda a, b: torch.softmax(net(sample[a:b].contiguous(memory_format=layout)).float(), dim=1),
            len(sample),
            chunk=len(sample),
            combine=torch.cat,
        )
        check = (sample, expected)
    return inference_copy(net, check[0][:1].contiguous(), check[0], check[1]), sample.device


def _chunks(run: Any, make: Inputs, layout: torch.memory_format, reduce: Reduce | None, *, head=None, per_trunk=0):
    """``chunk(start, stop)``: ``run`` (and ``head``, on the trunk's outputs of ``per_trunk``
    inputs at a time) over inputs ``start:stop`` in ``layout``, reduced."""

    def trunk(start: int, stop: int) -> torch.Tensor:
        return run(make(start, stop).contiguous(memory_format=layout))

    def chunk(start: int, stop: int) -> torch.Tensor:
        if head is None:
            logits = trunk(start, stop)
        else:
            logits = head(torch.cat([trunk(a, min(a + per_trunk, stop)) for a in range(start, stop, per_trunk)]))
        return logits if reduce is None else reduce(logits, start, stop)

    return chunk
