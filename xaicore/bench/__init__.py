"""Benchmarks behind ``xai bench``. Each workload is a module here defining
``WORKLOAD = Workload(name=..., run=...)``; see :mod:`xaicore.bench.common`."""
