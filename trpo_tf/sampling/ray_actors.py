"""Sampling workers as Ray actors: the ``"ray"`` backend of :mod:`trpo_tf.sampling.workers`.

Ray is imported when workers start, so the package works without it; a run that asks for it
without Ray installed is told how to install it.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Sequence

from trpo_tf.errors import InputError
from trpo_tf.sampling.workers import SamplerWorker, WorkerDiedError, register_backend

RAY_INSTALL = "pip install -e '.[ray]'"


class _RayHandle:
    """A :class:`SamplerWorker` as a Ray actor."""

    def __init__(self, ray: Any, actor: Any):
        self.ray, self.actor = ray, actor
        self.pending: Any = None

    def submit(self, method: str, *args: Any) -> None:
        self.pending = getattr(self.actor, method).remote(*args)

    def share(self, value: Any) -> Any:
        return self.ray.put(value)  # stored once in the object store; actors read it from there

    def result(self) -> Any:
        pending, self.pending = self.pending, None
        try:
            return self.ray.get(pending)
        except self.ray.exceptions.RayTaskError as error:
            raise error.as_instanceof_cause() from None
        except self.ray.exceptions.RayActorError as error:
            raise WorkerDiedError(f"died (Ray: {type(error).__name__})") from None

    def shutdown(self) -> None:
        try:
            self.ray.get(self.actor.close.remote())
        except self.ray.exceptions.RayActorError:
            pass  # already gone
        finally:
            self.ray.kill(self.actor)


@register_backend("ray")
def ray_workers(arguments: Sequence[tuple[Any, ...]], connect_timeout: float = 30.0) -> list[_RayHandle]:
    """One Ray actor per :class:`SamplerWorker` argument tuple in ``arguments``, spread over the cluster's
    nodes, one CPU each; returns a handle per actor.

    Ray is started as ``ray.init()`` starts it when it is not running yet: on the cluster at
    ``RAY_ADDRESS``, else the one ``ray start`` started on this machine, else a new local one. A
    cluster address where nothing answers within ``connect_timeout`` seconds is an error naming it
    (``ray.init`` itself would wait for ever). Raises :class:`~trpo_tf.errors.InputError` when Ray is
    not installed, no cluster answers, or the cluster has fewer CPUs than there are actors.
    """
    try:
        import ray
    except ImportError:
        raise InputError(f"sampler='ray' needs Ray, which is not installed: {RAY_INSTALL}") from None
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS", "").strip()
        if address and address not in ("auto", "local"):
            wait_for_cluster(address, connect_timeout)
        ray.init(log_to_driver=False, include_dashboard=False)
    cpus = ray.cluster_resources().get("CPU", 0)
    if len(arguments) > cpus:  # the actors that find no CPU would wait forever
        raise InputError(f"{len(arguments)} Ray actors need {len(arguments)} CPUs (one each), but the Ray cluster has "
                         f"{cpus:g}: use fewer workers, add machines (ray start --address ...), or start Ray with "
                         "more logical CPUs (ray start --head --num-cpus N, or ray.init(num_cpus=N) before training)")
    remote = ray.remote(num_cpus=1, scheduling_strategy="SPREAD")(SamplerWorker)
    return [_RayHandle(ray, remote.remote(*args)) for args in arguments]


DEFAULT_RAY_PORT = 6379  # the head node's GCS port, which ``ray start --head`` uses unless told otherwise
DEFAULT_CLIENT_PORT = 10001  # Ray Client's port, for ray:// addresses


def wait_for_cluster(address: str, timeout: float) -> None:
    """Return once a TCP connection to the Ray cluster at ``address`` ("host[:port]" or "ray://host[:port]")
    succeeds; :class:`~trpo_tf.errors.InputError` naming the address and what to check when none does
    within ``timeout`` seconds."""
    client = address.startswith("ray://")
    host, _, port_text = address.removeprefix("ray://").rpartition(":")
    if not host or not port_text.isdigit():
        host, port = address.removeprefix("ray://"), DEFAULT_CLIENT_PORT if client else DEFAULT_RAY_PORT
    else:
        port = int(port_text)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(5.0, remaining))):
                return
        except OSError as error:
            last = f"{type(error).__name__}: {error}"
        if time.monotonic() >= deadline:
            raise InputError(
                f"no Ray cluster answers at {address} ({host}:{port}) within {timeout:g} s ({last}): check that "
                f"'ray start --head' runs on {host} with that port, that this machine can reach it (firewall, "
                "network), and the address given (--ray ADDRESS or RAY_ADDRESS); TRPOConfig.ray_connect_timeout "
                "sets how long to wait")
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
