"""Box actions → a diagonal Gaussian with a state-independent log-std.

The network gives the mean [B, K] (K: the action's elements); the log-std [K] is a free
parameter, one per element, trained by the trust-region step with the network. Actions are
stored as sampled (unclipped), and clipped to the space's bounds only when sent to the
environment; log-probabilities use the stored action. The deterministic action is the mean,
clipped to the bounds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import gymnasium as gym
import numpy as np

from trpo_tf.errors import UnsupportedSpaceError
from trpo_tf.policies.distributions.base import ActionDistribution, Arrays

if TYPE_CHECKING:
    import tensorflow as tf


class Gaussian(ActionDistribution):
    """``Box`` → diagonal Gaussian N(mean, exp(log_std)²): the mean from the network, the log-std free.

    ``space`` is the Box action space (P = its K elements; infinite bounds do not clip); ``init_log_std``
    the initial value of every element of the free ``log_std`` [K].
    """

    name = "gaussian"
    spaces = (gym.spaces.Box,)
    configurable = True

    def __init__(self, space: gym.spaces.Box, init_log_std: float = 0.0):
        self.action_shape = tuple(space.shape)
        self.param_size = int(np.prod(space.shape, dtype=np.int64))
        self.action_dtype = "float32"
        self.low = space.low.astype(np.float32).reshape(-1)  # unbounded dimensions clip to ±inf: the identity
        self.high = space.high.astype(np.float32).reshape(-1)
        self.init_log_std = float(init_log_std)

    @classmethod
    def for_space(cls, space: gym.Space, init_log_std: float = 0.0) -> Gaussian:
        """The Gaussian over ``space`` with initial log-std ``init_log_std``; :class:`UnsupportedSpaceError`
        unless ``space`` is a Box."""
        if not isinstance(space, gym.spaces.Box):
            raise UnsupportedSpaceError(f"action_distribution='gaussian' needs a Box action space, got {space!r}")
        return cls(space, init_log_std)

    def free_parameters(self) -> dict[str, tuple[tuple[int, ...], float]]:
        """``{"log_std": ((K,), init_log_std)}``: one state-independent log-std per action element."""
        return {"log_std": ((self.param_size,), self.init_log_std)}

    # ------------------------------------------------------------------ TensorFlow side

    def parameters(self, outputs: tf.Tensor, free: Mapping[str, tf.Tensor]) -> list[tf.Tensor]:
        """[mean [B, K], log_std [K]]: the network ``outputs`` [B, K] are the mean, ``free["log_std"]``
        the log-std."""
        import tensorflow as tf
        return [outputs, tf.identity(free["log_std"])]

    def tfp_distribution(self, parameters: Sequence[tf.Tensor]) -> Any:
        """Independent Normals with mean ``parameters[0]`` [B, K] and std exp(``parameters[1]`` [K])."""
        import tensorflow as tf
        import tensorflow_probability as tfp
        mean, log_std = parameters
        return tfp.distributions.Independent(tfp.distributions.Normal(mean, tf.exp(log_std)),
                                             reinterpreted_batch_ndims=1)

    def named_parameters(self, parameters: Sequence[tf.Tensor]) -> dict[str, tf.Tensor]:
        """``{"mean": [B, *A], "log_std": [B, *A]}`` from ``parameters`` (the log-std broadcast over the batch)."""
        import tensorflow as tf
        mean, log_std = parameters
        return {"mean": self._shaped(mean), "log_std": self._shaped(tf.zeros_like(mean) + log_std)}

    def deterministic(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
        """The mean ``parameters[0]`` clipped to the bounds, shaped [B, *A]."""
        import tensorflow as tf
        return self._shaped(tf.clip_by_value(parameters[0], self.low, self.high))

    def sample(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
        """mean + exp(log_std)·noise from ``parameters``, clipped to the bounds, shaped [B, *A]."""
        import tensorflow as tf
        mean, log_std = parameters
        noise = tf.random.normal(tf.shape(mean))
        return self._shaped(tf.clip_by_value(mean + tf.exp(log_std) * noise, self.low, self.high))

    def _shaped(self, flat: tf.Tensor) -> tf.Tensor:
        """[B, K] → [B, *A]."""
        import tensorflow as tf
        return tf.reshape(flat, (-1,) + self.action_shape)

    # ------------------------------------------------------------------ NumPy side

    def act(self, outputs: np.ndarray, free: Arrays, rng: np.random.Generator | None) -> np.ndarray:
        """The mean ``outputs`` [B, K], plus exp(``free["log_std"]``)·noise drawn with ``rng`` when it is
        not None; unclipped, as a batch stores it."""
        if rng is None:
            return outputs
        return outputs + np.exp(free["log_std"]) * rng.standard_normal(outputs.shape, dtype=np.float32)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """Stored ``actions`` [B, K] clipped to the bounds, shaped [B, *A]."""
        clipped = np.minimum(np.maximum(actions, self.low), self.high)
        return clipped.reshape((len(actions),) + self.action_shape)
