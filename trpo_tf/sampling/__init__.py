"""Sampling: environments, the :class:`Batch` they produce, and the samplers that step them.

This package knows no TensorFlow: a sampler acts with a NumPy
:class:`~trpo_tf.policies.PolicySnapshot` (or, in this process, whatever acts like one). Every
sampler implements the :class:`Sampler` protocol (:mod:`.protocol`); :func:`make_sampler` picks
the backend: this process (:mod:`.in_process`), worker processes (:mod:`.processes`) or Ray
actors (:mod:`.ray_actors`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trpo_tf.errors import InputError
from trpo_tf.sampling import processes, ray_actors  # noqa: F401 - each registers its backend
from trpo_tf.sampling.batch import Batch
from trpo_tf.sampling.environments import (EnvLike, SerialVectorEnv, check_env_id, env_module, environment_state,
                                           make_env, make_vector_env, refuse_recorded_module,
                                           restore_environment_state)
from trpo_tf.sampling.in_process import InProcessSampler
from trpo_tf.sampling.protocol import Actor, Sampler
from trpo_tf.sampling.workers import WORKER_BACKENDS, start_workers

IN_PROCESS_BACKEND = "local"
"""The backend that, with one worker, steps the environments in this process instead."""

__all__ = ["Actor", "Batch", "EnvLike", "InProcessSampler", "Sampler", "SerialVectorEnv", "backend_names",
           "check_env_id", "env_module", "environment_state", "make_env", "make_sampler", "make_vector_env",
           "refuse_recorded_module", "restore_environment_state"]


def backend_names() -> tuple[str, ...]:
    """The values ``TRPOConfig.sampler`` accepts: the registered worker backends."""
    return tuple(WORKER_BACKENDS)


def make_sampler(env: EnvLike, *, n_envs: int, n_workers: int, backend: str, env_kwargs: dict[str, Any] | None,
                 seed: int, stream: np.random.SeedSequence, restart_workers: bool = False,
                 connect_timeout: float = 30.0, action_masks: str = "auto") -> Sampler:
    """The sampler for these settings (``TRPOConfig``'s ``n_envs``, ``n_workers``, ``sampler``, ``env_kwargs``,
    ``restart_workers``, ``ray_connect_timeout``, ``action_masks``): ``n_envs`` environments of ``env`` in this
    process when ``n_workers`` is 1 and ``backend`` is :data:`IN_PROCESS_BACKEND`, else in ``n_workers`` workers of
    ``backend``.

    ``env`` is an environment id, or (in this process only) a gymnasium ``Env`` or ``VectorEnv``;
    ``env_kwargs`` are passed to ``gymnasium.make`` with an id; environment i is reset with ``seed + i``;
    actions are drawn from ``stream`` (worker k: its k-th child); ``restart_workers`` replaces a worker that
    dies instead of failing; ``connect_timeout`` is how many seconds the Ray backend waits for a cluster
    given by address. Raises :class:`~trpo_tf.errors.InputError` when ``env`` cannot be sent to workers or a
    VectorEnv holds another number of environments than ``n_envs``, and what :func:`make_vector_env` or
    the workers raise for an unusable environment or backend.
    """
    if n_workers == 1 and backend == IN_PROCESS_BACKEND:
        vector_env = make_vector_env(env, n_envs, env_kwargs)
        if vector_env.num_envs != n_envs:
            raise InputError(f"the VectorEnv has {vector_env.num_envs} environments but config.n_envs is {n_envs}")
        return InProcessSampler(vector_env, seed=seed, rng=np.random.default_rng(stream), action_masks=action_masks)
    if not isinstance(env, str):
        raise InputError(f"sampling workers build their own environments from an environment id; got {env!r}: "
                         "pass its id (with config.env_kwargs), or use n_workers=1")
    return start_workers(env, env_kwargs, n_envs, n_workers, backend, seed, stream, restart_workers, connect_timeout,
                         action_masks)
