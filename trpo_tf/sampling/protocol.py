"""What every sampler offers the training loop, whichever backend steps its environments.

:class:`Sampler` is the protocol the in-process sampler (:mod:`.in_process`), worker
processes (:mod:`.processes`) and Ray actors (:mod:`.ray_actors`) implement; :class:`Actor`
is what a sampler acts with (a :class:`~trpo_tf.policies.PolicySnapshot`, or a compiled actor
in this process). :func:`~trpo_tf.sampling.make_sampler` picks the backend.
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from trpo_tf.sampling.batch import Batch


class Actor(Protocol):
    """What a sampler acts with (a :class:`~trpo_tf.policies.PolicySnapshot`)."""

    def act(self, observations: Any, rng: np.random.Generator | None,
            masks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``observations`` [N, *obs_shape] (a dict of them by key for a ``Dict`` space) → (actions for the
        environments [N, *A], actions to store [N, *A]); drawn with ``rng``, or the most probable ones when
        ``rng`` is None; among the actions ``masks`` [N, M] (nonzero where allowed) allows when the
        environments give action masks."""


class Sampler(Protocol):
    """N environments stepped with a policy, somewhere: a :class:`Batch` per :meth:`collect`.

    Attributes: ``n_envs`` (N), ``observation_space`` and ``action_space`` (one environment's; the
    observation space as the policy reads it), ``vector_env`` (the environments when they are stepped
    in this process, else None), ``needs_picklable_actor`` (True when the policy is sent to other
    processes, which need the NumPy snapshot) and ``mask_source`` (where the environments' action
    masks come from, see :mod:`.masks`; None when they give none: batches then hold no masks).
    """

    n_envs: int
    needs_picklable_actor: bool

    @property
    def mask_source(self) -> str | None:
        """Where the environments' action masks come from ("info", "method" or "observation"), or None."""

    @property
    def observation_space(self) -> gym.Space:
        """One environment's observation space (as the policy reads it: without a mask observation key)."""

    @property
    def action_space(self) -> gym.Space:
        """One environment's action space."""

    @property
    def vector_env(self) -> gym.vector.VectorEnv | None:
        """The vector environment when the environments are stepped in this process, else None."""

    def collect(self, policy: Actor, steps: int) -> Batch:
        """``steps`` vectorized steps of every environment, acting with ``policy``: a Batch [steps, N, ...]."""

    def state(self) -> dict[str, Any]:
        """Where sampling stands, as plain data (arrays, numbers): resumes with :meth:`load_state`."""

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state`; ValueError when it does not fit."""

    def environment_state(self) -> bytes:
        """The environments' state, pickled; empty (with a warning) when they cannot be pickled."""

    def load_environment_state(self, pickled: bytes | None, fresh_seed: int) -> None:
        """Put :meth:`environment_state` bytes ``pickled`` back (this unpickles: trusted bytes only); without
        them (None or empty), or when they do not fit, warn and start fresh episodes reset with ``fresh_seed``."""

    def restart_episodes(self, seed: int) -> None:
        """Forget the running episodes: the next :meth:`collect` resets the environments with ``seed``."""

    def take_restarts(self) -> int | None:
        """Workers replaced since the last call, or None for a backend that never replaces any."""

    def close(self) -> None:
        """Close the environments (and stop the workers); idempotent."""
