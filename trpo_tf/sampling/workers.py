"""Sampling on several cores or machines: worker processes or Ray actors behind the sampler's interface.

Each worker owns ``n_envs / K`` environments and a :class:`Sampler` over them, and acts with
the policy snapshot it is sent once per iteration: the learner sends the snapshot (a few KB
of arrays), each worker samples its whole segment with its own random stream and returns it
as one :class:`Batch`, and :func:`join_batches` lays the segments side by side as if one
sampler had stepped all N environments. Nothing crosses a process boundary per step
(gymnasium's ``AsyncVectorEnv`` pays ~0.2 ms of traffic per step on 2 cores, more than a
MuJoCo step).

The same :class:`SamplerWorker` runs in a local process (:func:`process_workers`) or as a Ray
actor (:func:`ray_workers`), with the same random streams, so a run gives the same history
with either. Environment i (of all N) is reset with ``seed + i`` as in the in-process
sampler; worker k draws actions from the k-th child of the sampling seed sequence.
"""

from __future__ import annotations

import multiprocessing.connection
import signal
import socket
import struct
import subprocess
import sys
import warnings
from typing import Any, Protocol, Sequence

import numpy as np

from trpo_tf.errors import CheckpointWarning, InputError
from trpo_tf.sampling.batch import Batch
from trpo_tf.sampling.environments import make_vector_env
from trpo_tf.sampling.sampler import Actor, Sampler

RAY_INSTALL = "pip install -e '.[ray]'"


class SamplerWorker:
    """One worker: ``n_envs`` environments made from ``env_id`` and a :class:`Sampler` over them.

    ``seed`` resets the worker's first environment (its others get ``seed + 1``, ...);
    ``stream`` seeds the worker's action sampling.
    """

    def __init__(self, env_id: str, env_kwargs: dict[str, Any] | None, n_envs: int, seed: int,
                 stream: np.random.SeedSequence):
        self.sampler = Sampler(make_vector_env(env_id, n_envs, env_kwargs), seed=seed,
                               rng=np.random.default_rng(stream))

    def collect(self, policy: Actor, steps: int) -> Batch:
        return self.sampler.collect(policy, steps)

    def state(self) -> dict[str, Any]:
        return self.sampler.state()

    def load_state(self, state: dict[str, Any]) -> None:
        self.sampler.load_state(state)

    def environment_state(self) -> bytes:
        return self.sampler.environment_state()

    def load_environment_state(self, pickled: bytes | None, fresh_seed: int) -> None:
        self.sampler.load_environment_state(pickled, fresh_seed)

    def restart_episodes(self, seed: int) -> None:
        self.sampler.restart_episodes(seed)

    def close(self) -> None:
        self.sampler.close()


class _Handle(Protocol):
    """A worker somewhere: ``submit`` a method call, then ``result`` it (in submission order)."""

    def submit(self, method: str, *args: Any) -> None: ...

    def result(self) -> Any: ...

    def share(self, value: Any) -> Any:
        """``value`` as every worker of this kind can take it (Ray: one ``ray.put`` for all)."""

    def shutdown(self) -> None: ...


class WorkerSampler:
    """A sampler whose environments live in K workers; the interface of :class:`Sampler`.

    ``worker_envs[k]`` is the number of environments of worker k, in the order their
    segments are joined.
    """

    def __init__(self, handles: Sequence[_Handle], worker_envs: Sequence[int]):
        self.handles = list(handles)
        self.worker_envs = list(worker_envs)
        self.n_envs = sum(self.worker_envs)

    def collect(self, policy: Actor, steps: int) -> Batch:
        """Every worker samples ``steps`` vectorized steps with ``policy``; their segments, joined."""
        shared = self.handles[0].share(policy) if self.handles else policy
        return join_batches(self._call_all("collect", [(shared, steps)] * len(self.handles)), self.worker_envs)

    def state(self) -> dict[str, Any]:
        return {"workers": self._call_all("state")}

    def load_state(self, state: dict[str, Any]) -> None:
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
        """Hand each worker its part of an :meth:`environment_state` record (it unpickles: trusted bytes only)."""
        parts = _split_record(pickled or b"", len(self.handles))
        if parts[0] is None:
            warnings.warn("the checkpoint holds no environment state of these workers; continuing with freshly "
                          "reset environments", CheckpointWarning, stacklevel=2)
            self.restart_episodes(fresh_seed)
            return
        self._call_all("load_environment_state",
                       [(part, fresh_seed + offset) for part, offset in zip(parts, env_offsets(self.worker_envs))])

    def restart_episodes(self, seed: int) -> None:
        self._call_all("restart_episodes", [(seed + offset,) for offset in env_offsets(self.worker_envs)])

    def close(self) -> None:
        """Close the workers' environments and stop the workers (idempotent)."""
        handles, self.handles = self.handles, []
        for handle in handles:
            handle.shutdown()

    def _call_all(self, method: str, args: Sequence[tuple[Any, ...]] | None = None) -> list[Any]:
        """Call ``method`` on every worker at once; their results in worker order."""
        if not self.handles:
            raise RuntimeError("the workers were closed")
        for handle, arguments in zip(self.handles, args or [()] * len(self.handles)):
            handle.submit(method, *arguments)
        return [handle.result() for handle in self.handles]


def join_batches(batches: Sequence[Batch], worker_envs: Sequence[int]) -> Batch:
    """Segments [T, N_k, ...] of K workers → one Batch [T, ΣN_k, ...], environments in worker order.

    Final observations, their indices and the finished episodes are ordered by step, then by
    environment — as one sampler stepping all environments records them.
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
    )


def _join(parts: Sequence[Any], axis: int = 0, rows: np.ndarray | None = None) -> Any:
    """Arrays (or dicts of arrays by key, for a Dict space) concatenated along ``axis``, then the
    ``rows`` of the result when given."""
    if isinstance(parts[0], dict):
        return {key: _join([part[key] for part in parts], axis, rows) for key in parts[0]}
    joined = np.concatenate(parts, axis=axis)
    return joined if rows is None else joined[rows]


def start_workers(env_id: str, env_kwargs: dict[str, Any] | None, n_envs: int, n_workers: int, backend: str,
                  seed: int, stream: np.random.SeedSequence) -> WorkerSampler:
    """``n_workers`` workers (``backend`` "local": processes; "ray": Ray actors) sharing ``n_envs`` environments.

    Worker k draws actions from the k-th child of ``stream``; a single worker draws from
    ``stream`` itself, so it samples exactly as the in-process :class:`Sampler` would.
    """
    sizes = split_envs(n_envs, n_workers)
    streams = [stream] if n_workers == 1 else stream.spawn(n_workers)
    arguments = [(env_id, env_kwargs, size, seed + offset, child)
                 for size, offset, child in zip(sizes, env_offsets(sizes), streams)]
    handles: Sequence[_Handle] = process_workers(arguments) if backend == "local" else ray_workers(arguments)
    return WorkerSampler(handles, sizes)


def env_offsets(worker_envs: Sequence[int]) -> list[int]:
    """The index (among all environments) of each worker's first environment."""
    return [int(offset) for offset in np.cumsum([0] + list(worker_envs[:-1]))]


def split_envs(n_envs: int, n_workers: int) -> list[int]:
    """Environments per worker: ``n_envs / n_workers`` each (it must divide)."""
    if n_envs % n_workers:
        raise InputError(f"n_envs ({n_envs}) must be a multiple of n_workers ({n_workers}): each worker "
                         "steps the same number of environments")
    return [n_envs // n_workers] * n_workers



# --------------------------------------------------------------------------- local processes

class _ProcessHandle:
    """A :class:`SamplerWorker` in a child Python process, talking over a private socket pair.

    The child runs ``python -m trpo_tf.sampling.worker_process``: it imports only the sampler,
    never the user's ``__main__``, so scripts need no ``if __name__ == "__main__"`` guard.
    """

    def __init__(self, arguments: tuple[Any, ...]):
        mine, theirs = socket.socketpair()
        self.name = f"sampler worker (environments from seed {arguments[3]})"
        self.process = subprocess.Popen([sys.executable, "-m", "trpo_tf.sampling.worker_process",
                                         str(theirs.fileno())], pass_fds=[theirs.fileno()])
        theirs.close()
        self.connection = multiprocessing.connection.Connection(mine.detach())
        self.connection.send(arguments)

    def submit(self, method: str, *args: Any) -> None:
        try:
            self.connection.send((method, args))
        except OSError:
            pass  # the worker died: result() says so

    def share(self, value: Any) -> Any:
        return value  # pickled into each worker's pipe

    def result(self) -> Any:
        try:
            status, value = self.connection.recv()
        except (EOFError, OSError):
            raise RuntimeError(f"{self.name} died (exit code {self.process.wait()})") from None
        if status == "error":
            raise value
        return value

    def shutdown(self) -> None:
        try:
            self.connection.send(("close", ()))
            self.connection.recv()
        except (OSError, EOFError):
            pass
        self.connection.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def serve(connection: multiprocessing.connection.Connection) -> None:
    """A worker process's loop: build the worker from the first message, then answer method calls
    until "close" or until the learner is gone.

    Ctrl-C reaches the whole process group: the worker ignores it and the learner, which
    handles it, closes the workers.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        worker = SamplerWorker(*connection.recv())
    except EOFError:
        return
    except Exception as error:  # noqa: BLE001 - reported to the learner, which raises it
        connection.send(("error", error))
        return
    while True:
        try:
            method, args = connection.recv()
        except EOFError:  # the learner is gone
            worker.close()
            return
        try:
            value = getattr(worker, method)(*args)
        except Exception as error:  # noqa: BLE001 - reported to the learner, which raises it
            connection.send(("error", error))
            continue
        connection.send(("ok", value))
        if method == "close":
            return


def process_workers(arguments: Sequence[tuple[Any, ...]]) -> list[_ProcessHandle]:
    """One local worker process per :class:`SamplerWorker` argument tuple."""
    return [_ProcessHandle(args) for args in arguments]


# --------------------------------------------------------------------------- Ray

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

    def shutdown(self) -> None:
        try:
            self.ray.get(self.actor.close.remote())
        finally:
            self.ray.kill(self.actor)


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
    remote = ray.remote(num_cpus=1)(SamplerWorker)
    return [_RayHandle(ray, remote.remote(*args)) for args in arguments]


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
