"""A small real Ray on this machine for one test module, and the check that it leaves nothing behind.

Two CPUs, a 200 MB object store, no dashboard. :func:`local_ray` starts it, yields its start-up
time in seconds, shuts it down and fails when a process of its session (raylet, GCS, a worker)
is still alive 20 seconds later.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import ray

STARTUP_LIMIT_S = 60.0  # a few seconds on an idle machine; generous for a shared CI runner


def session_processes(session_dir: str) -> list[str]:
    """``ps`` lines of the processes that name the Ray session folder ``session_dir``."""
    listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in listing.splitlines() if session_dir in line and "ps -eo" not in line]


@contextmanager
def local_ray() -> Iterator[float]:
    started = time.perf_counter()
    ray.init(
        address="local",  # a new instance, never a cluster that another `ray start` left on this machine
        num_cpus=2,
        object_store_memory=200 * 1024**2,
        include_dashboard=False,
        log_to_driver=False,
    )
    startup_s = time.perf_counter() - started
    session_dir = ray._private.worker._global_node.get_session_dir_path()  # its processes name it
    try:
        assert startup_s < STARTUP_LIMIT_S
        yield startup_s
    finally:
        ray.shutdown()
    deadline = time.monotonic() + 20
    while session_processes(session_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert session_processes(session_dir) == []  # no raylet, GCS or worker of this session is left
