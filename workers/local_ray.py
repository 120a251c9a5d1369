"""A local Ray for the processes that drive actors: its environment, and a session that ends what it began.

The trainer's run and `motionnft bench generate` both start Ray on this machine when no cluster is
connected; both go through here so the local Ray is configured once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def local_ray_environment() -> None:
    """A local Ray sends no usage stats and needs no token (on by default since Ray 2.60).

    `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` keeps a local Ray on 127.0.0.1, but Ray reads it when it is
    imported: set here it reaches the processes Ray starts, not this one's address, so the Makefile
    sets it before Python starts. A cluster node leaves it unset (multi-node needs it on).
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@contextmanager
def ray_session() -> Iterator[None]:
    """Ray as it is (a driver inside a cluster job, a test's session), or a local one on loopback
    started here and shut down on exit; a Ray this process did not start is left running."""
    import ray

    started = not ray.is_initialized()
    if started:
        local_ray_environment()
        ray.init(include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        yield
    finally:
        if started:
            ray.shutdown()
