"""Sampling workers as Ray actors: the ``"ray"`` backend of :mod:`trpo_tf.sampling.workers`.

Ray is imported when workers start, so the package works without it; a run that asks for it
without Ray installed is told how to install it.
"""

from __future__ import annotations

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
def ray_workers(arguments: Sequence[tuple[Any, ...]]) -> list[_RayHandle]:
    """One Ray actor per :class:`SamplerWorker` argument tuple.

    Ray is started as ``ray.init()`` starts it when it is not running yet: on the cluster at
    ``RAY_ADDRESS``, else the one ``ray start`` started on this machine, else a new local one.
    """
    try:
        import ray
    except ImportError:
        raise InputError(f"sampler='ray' needs Ray, which is not installed: {RAY_INSTALL}") from None
    if not ray.is_initialized():
        ray.init(log_to_driver=False, include_dashboard=False)
    cpus = ray.cluster_resources().get("CPU", 0)
    if len(arguments) > cpus:  # the actors that find no CPU would wait forever
        raise InputError(f"{len(arguments)} Ray actors need {len(arguments)} CPUs (one each), but the Ray cluster has "
                         f"{cpus:g}: use fewer workers, add machines (ray start --address ...), or start Ray with "
                         "more logical CPUs (ray start --head --num-cpus N, or ray.init(num_cpus=N) before training)")
    remote = ray.remote(num_cpus=1)(SamplerWorker)
    return [_RayHandle(ray, remote.remote(*args)) for args in arguments]
