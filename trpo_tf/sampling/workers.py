"""Sampling on several cores or machines: K workers behind the :class:`~trpo_tf.sampling.protocol.Sampler` protocol.

Each worker owns ``n_envs / K`` environments and a :class:`Sampler` over them, and acts with
the policy snapshot it is sent once per iteration: the learner sends the snapshot (a few KB
of arrays), each worker samples its whole segment with its own random stream and returns it
as one :class:`Batch`, and :func:`join_batches` lays the segments side by side as if one
sampler had stepped all N environments. Nothing crosses a process boundary per step
(gymnasium's ``AsyncVectorEnv`` pays ~0.2 ms of traffic per step on 2 cores, more than a
MuJoCo step).

The same :class:`SamplerWorker` runs in a local process (:mod:`.processes`) or as a Ray actor
(:mod:`.ray_actors`), with the same random streams, so a run gives the same history with either.
A backend is a function that starts workers and returns a :class:`WorkerHandle` for each; it
registers itself under its ``TRPOConfig.sampler`` name in :data:`WORKER_BACKENDS`. Environment i (of all N) is reset with ``seed + i`` as in the in-process
sampler; worker k draws actions from the k-th child of the sampling seed sequence.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import warnings
from typing import Any, Callable, Protocol, Sequence

import gymnasium as gym
import numpy as np

from trpo_tf.errors import CheckpointWarning, InputError, WorkerRestartWarning
from trpo_tf.sampling.batch import Batch
from trpo_tf.sampling.environments import make_env, make_vector_env, portable_registration, register_portable
from trpo_tf.sampling.in_process import InProcessSampler
from trpo_tf.sampling.masks import find_source, mask_size, policy_observation_space
from trpo_tf.sampling.protocol import Actor


class SamplerWorker:
    """One worker: ``n_envs`` environments made from ``env_id`` and an :class:`InProcessSampler` over them.

    ``env_kwargs`` are passed to ``gymnasium.make`` with ``env_id``; ``seed`` resets the worker's first
    environment (its others get ``seed + 1``, ...); ``stream`` seeds the worker's action sampling; errors
    name the environments from ``first_index`` on, their index among all the run's environments.
    ``registration``: the learner's registration of ``env_id``
    (:func:`~trpo_tf.sampling.environments.portable_registration`), used when this process does not know
    the id; ``action_masks`` is ``TRPOConfig.action_masks``. Raises
    :class:`~trpo_tf.errors.UnknownEnvironmentError` when the environments cannot be made.
    """

    def __init__(self, env_id: str, env_kwargs: dict[str, Any] | None, n_envs: int, seed: int,
                 stream: np.random.SeedSequence, first_index: int = 0, registration: bytes | None = None,
                 action_masks: str = "auto"):
        if registration is not None:
            register_portable(env_id, registration)
        self.sampler = InProcessSampler(make_vector_env(env_id, n_envs, env_kwargs, first_index), seed=seed,
                                        rng=np.random.default_rng(stream), action_masks=action_masks)

    def location(self) -> str:
        """Where this worker runs: "host (address), pid N", and "Ray node ID" for a Ray actor."""
        host = socket.gethostname()
        try:
            address = socket.gethostbyname(host)
        except OSError:
            address = "address unknown"
        ray = sys.modules.get("ray")  # imported in a Ray actor's process, never here
        node = f", Ray node {ray.get_runtime_context().get_node_id()}" if ray and ray.is_initialized() else ""
        return f"{host} ({address}), pid {os.getpid()}{node}"

    def collect(self, policy: Actor, steps: int) -> Batch:
        """``steps`` vectorized steps of this worker's environments with ``policy``: a Batch [steps, n_envs, ...]
        (see :meth:`InProcessSampler.collect`, whose errors it raises)."""
        return self.sampler.collect(policy, steps)

    def state(self) -> dict[str, Any]:
        """This worker's sampler state, as plain data (see :meth:`InProcessSampler.state`)."""
        return self.sampler.state()

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from ``state``, a :meth:`state` of this worker; ValueError when it does not fit."""
        self.sampler.load_state(state)

    def environment_state(self) -> bytes:
        """This worker's environments' state, pickled; empty (with a warning) when they cannot be pickled."""
        return self.sampler.environment_state()

    def load_environment_state(self, pickled: bytes | None, fresh_seed: int) -> None:
        """Put this worker's part ``pickled`` of an environment state back, or (without it, or when it does
        not fit) warn and reset fresh episodes with ``fresh_seed``."""
        self.sampler.load_environment_state(pickled, fresh_seed)

    def restart_episodes(self, seed: int) -> None:
        """Forget the running episodes: the next :meth:`collect` resets this worker's environments from ``seed``."""
        self.sampler.restart_episodes(seed)

    def close(self) -> None:
        """Close this worker's environments."""
        self.sampler.close()


class WorkerDiedError(RuntimeError):
    """A sampling worker (process or Ray actor) is gone; the message names it and, when known, why."""


MAX_RESTARTS_PER_CALL = 3
"""Replacements of one worker within one call before its failure is raised after all."""


class WorkerHandle(Protocol):
    """A worker somewhere: ``submit`` a method call, then ``result`` it (in submission order).

    ``result`` raises :class:`WorkerDiedError` when the worker is gone, or the exception the
    worker's method raised.
    """

    def submit(self, method: str, *args: Any) -> None:
        """Send the call ``method(*args)`` to the worker without waiting for its result."""

    def result(self) -> Any:
        """The result of the oldest submitted call, waiting for it: the worker method's return value.
        Raises :class:`WorkerDiedError` when the worker is gone, or the exception the method raised."""

    def share(self, value: Any) -> Any:
        """``value`` as every worker of this kind can take it (Ray: one ``ray.put`` for all)."""

    def shutdown(self) -> None:
        """Close the worker's environments and stop the worker; a worker already gone is not an error."""


Launcher = Callable[[Sequence[tuple[Any, ...]], float], Sequence[WorkerHandle]]
"""A backend: ``launch(arguments, connect_timeout)`` starts one :class:`SamplerWorker` per tuple of its
constructor's arguments and returns their handles; a backend that connects to a cluster gives up after
``connect_timeout`` seconds."""

WORKER_BACKENDS: dict[str, Launcher] = {}
"""The backends by ``TRPOConfig.sampler`` name, registered by :func:`register_backend`."""


def register_backend(name: str) -> Callable[[Launcher], Launcher]:
    """Register the decorated launcher as the backend ``TRPOConfig.sampler = name`` selects."""
    def register(launch: Launcher) -> Launcher:
        WORKER_BACKENDS[name] = launch
        return launch
    return register


class WorkerSampler:
    """A :class:`~trpo_tf.sampling.protocol.Sampler` whose environments live in K workers.

    ``handles`` are the K workers' :class:`WorkerHandle` s; ``worker_envs[k]`` is the number of
    environments of worker k, in the order their segments are joined. ``restart(k)``, when given,
    starts a replacement for worker k with fresh environments: :meth:`collect` then replaces a worker
    that died or whose environment raised, resamples its segment and counts it in
    :meth:`take_restarts`. ``spaces``: one environment's (observation space as the policy reads it,
    action space); ``mask_source``: where the workers' environments give action masks from (None:
    nowhere).
    """

    needs_picklable_actor = True
    vector_env = None  # the environments live in the workers

    def __init__(self, handles: Sequence[WorkerHandle], worker_envs: Sequence[int],
                 restart: Callable[[int], WorkerHandle] | None = None,
                 spaces: tuple[gym.Space, gym.Space] | None = None, mask_source: str | None = None):
        self.handles = list(handles)
        self.mask_source = mask_source
        self.worker_envs = list(worker_envs)
        self.n_envs = sum(self.worker_envs)
        self.restart = restart
        self.restarts = 0  # since the last take_restarts()
        self.spaces = spaces
        self.locations: list[str | None] = [None] * len(self.handles)  # where each worker runs, once it said

    @property
    def observation_space(self) -> gym.Space:
        """One environment's observation space (from ``spaces``)."""
        assert self.spaces is not None, "a WorkerSampler made without spaces"
        return self.spaces[0]

    @property
    def action_space(self) -> gym.Space:
        """One environment's action space (from ``spaces``)."""
        assert self.spaces is not None, "a WorkerSampler made without spaces"
        return self.spaces[1]

    def collect(self, policy: Actor, steps: int) -> Batch:
        """Every worker samples ``steps`` vectorized steps with ``policy``; their segments, joined."""
        shared = self.handles[0].share(policy) if self.handles else policy
        segments = self._call_all("collect", [(shared, steps)] * len(self.handles), may_restart=True)
        return join_batches(segments, self.worker_envs)

    def take_restarts(self) -> int:
        """Workers replaced since the last call (0 without ``restart``, but always a count: workers may fail)."""
        restarts, self.restarts = self.restarts, 0
        return restarts

    def state(self) -> dict[str, Any]:
        """Where sampling stands: ``{"workers": [each worker's sampler state]}``, plain data."""
        return {"workers": self._call_all("state")}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from ``state``, a :meth:`state` of a sampler with as many workers; ValueError when the
        number of workers differs or a worker's part does not fit its environments."""
        workers = state.get("workers")
        if not isinstance(workers, list) or len(workers) != len(self.handles):
            found = len(workers) if isinstance(workers, list) else "no"
            raise ValueError(f"the sampler state is for {found} workers, this sampler has {len(self.handles)}")
        self._call_all("load_state", [(worker,) for worker in workers])

    def environment_state(self) -> bytes:
        """The workers' environment states, each as its worker pickled it, in one length-prefixed record.

        Empty when any worker's environments cannot be pickled (that worker warned).
        """
        parts = self._call_all("environment_state")
        if not all(parts):
            return b""
        return b"".join(struct.pack("<Q", len(part)) + part for part in parts)

    def load_environment_state(self, pickled: bytes | None, fresh_seed: int) -> None:
        """Hand each worker its part of an :meth:`environment_state` record ``pickled`` (it unpickles:
        trusted bytes only). Without a record, or one that does not split into one part per worker, warns
        (:class:`~trpo_tf.errors.CheckpointWarning`) and restarts every episode. Fresh episodes, there or in
        a worker whose part does not fit its environments, reset environment i (of all N) with
        ``fresh_seed + i``."""
        parts = _split_record(pickled or b"", len(self.handles))
        if parts[0] is None:
            warnings.warn("the checkpoint holds no environment state of these workers; continuing with freshly "
                          "reset environments", CheckpointWarning, stacklevel=2)
            self.restart_episodes(fresh_seed)
            return
        self._call_all("load_environment_state",
                       [(part, fresh_seed + offset) for part, offset in zip(parts, env_offsets(self.worker_envs))])

    def restart_episodes(self, seed: int) -> None:
        """Forget the running episodes of every worker: the next :meth:`collect` resets environment i (of
        all N) with ``seed + i``."""
        self._call_all("restart_episodes", [(seed + offset,) for offset in env_offsets(self.worker_envs)])

    def close(self) -> None:
        """Close the workers' environments and stop the workers (idempotent)."""
        handles, self.handles = self.handles, []
        for handle in handles:
            handle.shutdown()

    def locate(self) -> None:
        """Ask every worker where it runs (its host and process), for the messages that name it."""
        self.locations = list(self._call_all("location"))

    def describe(self, k: int) -> str:
        """How messages name worker k: "sampler worker k of K (environments a–b, on host (address), pid N)"."""
        first = env_offsets(self.worker_envs)[k]
        where = f", on {self.locations[k]}" if self.locations[k] else ""
        return (f"sampler worker {k} of {len(self.worker_envs)} "
                f"(environments {first}–{first + self.worker_envs[k] - 1}{where})")

    def _call_all(self, method: str, args: Sequence[tuple[Any, ...]] | None = None,
                  may_restart: bool = False) -> list[Any]:
        """Call ``method`` on every worker at once; their results in worker order.

        Every worker's answer is read before any failure is raised, so the workers that did
        not fail stay in step. With ``may_restart`` and a ``restart``, a worker that failed
        (anything but an :class:`InputError`: those name a bug to fix, not a fault) is replaced
        and asked again.
        """
        if not self.handles:
            raise RuntimeError("the workers were closed")
        args = args or [()] * len(self.handles)
        for handle, arguments in zip(self.handles, args):
            handle.submit(method, *arguments)
        outcomes = [_outcome(handle) for handle in self.handles]
        results = []
        for k, (failure, value) in enumerate(outcomes):
            if failure is not None and may_restart and self.restart is not None and not isinstance(failure, InputError):
                failure, value = self._replace_and_retry(k, failure, method, args[k])
            if failure is not None:
                raise self._named(k, failure)
            results.append(value)
        return results

    def _replace_and_retry(self, k: int, first_failure: BaseException, method: str,
                           arguments: tuple[Any, ...]) -> tuple[BaseException | None, Any]:
        """Replace worker k (it failed with ``first_failure``) and call ``method`` on the new one, up
        to :data:`MAX_RESTARTS_PER_CALL` times; (None, result) or the last failure."""
        assert self.restart is not None
        failure: BaseException | None = first_failure
        value = None
        for _ in range(MAX_RESTARTS_PER_CALL):
            assert failure is not None
            warnings.warn(f"{self._named(k, failure)}; replacing it with fresh environments and sampling its "
                          "segment again", WorkerRestartWarning, stacklevel=4)
            _shutdown_quietly(self.handles[k])
            self.handles[k] = self.restart(k)
            self.restarts += 1
            self.handles[k].submit("location")
            failure, location = _outcome(self.handles[k])
            if failure is None:
                self.locations[k] = location
                self.handles[k].submit(method, *arguments)
                failure, value = _outcome(self.handles[k])
            if failure is None or isinstance(failure, InputError):
                break
        return failure, value

    def _named(self, k: int, failure: BaseException) -> BaseException:
        """``failure`` of worker k, naming the worker: a death as one message, anything else with a note."""
        if isinstance(failure, WorkerDiedError):
            return WorkerDiedError(f"{self.describe(k)} {failure}")
        if f"raised in {self.describe(k)}" not in getattr(failure, "__notes__", []):
            failure.add_note(f"raised in {self.describe(k)}")
        return failure


def _outcome(handle: WorkerHandle) -> tuple[BaseException | None, Any]:
    """(None, the handle's result), or (what it raised, None)."""
    try:
        return None, handle.result()
    except Exception as failure:  # noqa: BLE001 - the caller names the worker and raises it
        return failure, None


def _shutdown_quietly(handle: WorkerHandle) -> None:
    """Stop a worker that failed, whatever state it is in."""
    try:
        handle.shutdown()
    except Exception:  # noqa: BLE001 - it is being replaced because it failed
        pass


def join_batches(batches: Sequence[Batch], worker_envs: Sequence[int]) -> Batch:
    """Segments [T, N_k, ...] of K workers → one Batch [T, ΣN_k, ...], environments in worker order.

    ``batches`` are the K workers' segments, in worker order; ``worker_envs`` [K] their environment
    counts N_k, which shift each segment's environment indices. Final observations, their indices and
    the finished episodes are ordered by step, then by environment — as one sampler stepping all
    environments records them.
    """
    final_index = np.concatenate([batch.final_index + np.array([0, offset]) for batch, offset in
                                  zip(batches, env_offsets(worker_envs))]).reshape(-1, 2)
    order = np.lexsort((final_index[:, 1], final_index[:, 0]))  # by t, then n
    returns = [r for batch in batches for r in batch.episode_returns]
    lengths = [n for batch in batches for n in batch.episode_lengths]
    return Batch(
        observations=_join([batch.observations for batch in batches], axis=1),
        actions=np.concatenate([batch.actions for batch in batches], axis=1),
        rewards=np.concatenate([batch.rewards for batch in batches], axis=1),
        terminated=np.concatenate([batch.terminated for batch in batches], axis=1),
        truncated=np.concatenate([batch.truncated for batch in batches], axis=1),
        final_observations=_join([batch.final_observations for batch in batches], rows=order),
        final_index=final_index[order],
        last_observations=_join([batch.last_observations for batch in batches]),
        episode_returns=[returns[i] for i in order],
        episode_lengths=[lengths[i] for i in order],
        action_masks=None if batches[0].action_masks is None else
        np.concatenate([batch.action_masks for batch in batches if batch.action_masks is not None], axis=1),
        recurrent_states=None if batches[0].recurrent_states is None else
        np.concatenate([batch.recurrent_states for batch in batches if batch.recurrent_states is not None]),
        episode_starts=None if batches[0].episode_starts is None else
        np.concatenate([batch.episode_starts for batch in batches if batch.episode_starts is not None], axis=1),
    )


def _join(parts: Sequence[Any], axis: int = 0, rows: np.ndarray | None = None) -> Any:
    """Arrays (or dicts of arrays by key, for a Dict space) concatenated along ``axis``, then the
    ``rows`` of the result when given."""
    if isinstance(parts[0], dict):
        return {key: _join([part[key] for part in parts], axis, rows) for key in parts[0]}
    joined = np.concatenate(parts, axis=axis)
    return joined if rows is None else joined[rows]


def start_workers(env_id: str, env_kwargs: dict[str, Any] | None, n_envs: int, n_workers: int, backend: str,
                  seed: int, stream: np.random.SeedSequence, restart_workers: bool = False,
                  connect_timeout: float = 30.0, action_masks: str = "auto") -> WorkerSampler:
    """``n_workers`` workers of ``backend`` (a name in :data:`WORKER_BACKENDS`: "local" for processes, "ray"
    for Ray actors) sharing ``n_envs`` environments made from ``env_id`` with ``env_kwargs``.

    Environment i (of all N) is reset with ``seed + i``. Worker k draws actions from the k-th child of
    ``stream``; a single worker draws from ``stream`` itself, so it samples exactly as the in-process
    :class:`Sampler` would. With ``restart_workers`` a failed worker k is replaced by one whose
    environments and actions come from the next child of worker k's stream (fresh episodes,
    reproducible per run). ``connect_timeout``: seconds a backend that connects to a cluster (Ray)
    waits for it. ``action_masks`` is ``TRPOConfig.action_masks``: with "auto" an environment made
    here tells where masks come from.

    Raises :class:`~trpo_tf.errors.InputError` when ``n_envs`` is not a multiple of ``n_workers`` or
    the backend cannot start (Ray missing or too small),
    :class:`~trpo_tf.errors.UnknownEnvironmentError` for an id that cannot be made or sent to workers,
    and what a worker raised while starting; the workers started are stopped first.
    """
    sizes = split_envs(n_envs, n_workers)
    offsets = env_offsets(sizes)
    streams = [stream] if n_workers == 1 else stream.spawn(n_workers)
    launch = WORKER_BACKENDS[backend]
    probe = make_env(env_id, env_kwargs)  # the spaces and the masks' source, from one environment here
    try:
        source = None
        if action_masks == "auto" and mask_size(probe.action_space) is not None:
            source = find_source(probe, probe.reset(seed=seed)[1])
        spaces = (policy_observation_space(probe.observation_space, source), probe.action_space)
    finally:
        probe.close()
    registration = portable_registration(env_id)
    handles = launch([(env_id, env_kwargs, size, seed + offset, child, offset, registration, action_masks)
                      for size, offset, child in zip(sizes, offsets, streams)], connect_timeout)

    def restart(k: int) -> WorkerHandle:
        fresh = streams[k].spawn(1)[0]
        reset_seed = int(fresh.generate_state(1)[0])
        return launch([(env_id, env_kwargs, sizes[k], reset_seed, fresh, offsets[k], registration, action_masks)],
                      connect_timeout)[0]

    sampler = WorkerSampler(handles, sizes, restart if restart_workers else None, spaces, source)
    try:
        sampler.locate()
    except BaseException:
        sampler.close()
        raise
    return sampler


def env_offsets(worker_envs: Sequence[int]) -> list[int]:
    """The index (among all environments) of each worker's first environment, from ``worker_envs`` [K],
    the number of environments of each worker."""
    return [int(offset) for offset in np.cumsum([0] + list(worker_envs[:-1]))]


def split_envs(n_envs: int, n_workers: int) -> list[int]:
    """Environments per worker: ``n_envs / n_workers`` each (it must divide)."""
    if n_envs % n_workers:
        raise InputError(f"n_envs ({n_envs}) must be a multiple of n_workers ({n_workers}): each worker "
                         "steps the same number of environments")
    return [n_envs // n_workers] * n_workers



def _split_record(record: bytes, count: int) -> list[bytes | None]:
    """Inverse of the record :meth:`WorkerSampler.environment_state` writes; Nones when it does not parse."""
    parts: list[bytes | None] = []
    position = 0
    while position + 8 <= len(record) and len(parts) < count:
        (length,) = struct.unpack_from("<Q", record, position)
        parts.append(record[position + 8: position + 8 + length])
        position += 8 + length
    if len(parts) != count or position != len(record):
        return [None] * count
    return parts
