"""MultiBinary actions → independent Bernoullis, one logit per binary action.

Each bit is 1 with probability sigmoid(logit); the deterministic action sets the bits whose
logit is positive. Actions are stored and sent as int32 0/1 [B, *A].
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import gymnasium as gym
import numpy as np

from trpo_tf.errors import UnsupportedSpaceError
from trpo_tf.policies.distributions.base import ActionDistribution, Arrays, FlatEvents

if TYPE_CHECKING:
    import tensorflow as tf


class Bernoulli(ActionDistribution):
    """``MultiBinary`` → independent Bernoullis, one logit per bit.

    ``space`` is the MultiBinary action space; its ``n`` (an int or a shape) gives A, and P = the number of bits.
    """

    name = "bernoulli"
    spaces = (gym.spaces.MultiBinary,)

    def __init__(self, space: gym.spaces.MultiBinary):
        self.action_shape = tuple(int(n) for n in np.atleast_1d(np.asarray(space.n)))
        self.param_size = int(np.prod(self.action_shape))
        self.action_dtype = "int32"

    @classmethod
    def for_space(cls, space: gym.Space, init_log_std: float = 0.0) -> Bernoulli:
        """The Bernoulli distribution over ``space``; :class:`UnsupportedSpaceError` unless it is ``MultiBinary``.
        ``init_log_std`` is ignored."""
        if not isinstance(space, gym.spaces.MultiBinary):
            raise UnsupportedSpaceError(f"the bernoulli distribution needs a MultiBinary action space, got {space!r}")
        return cls(space)

    # ------------------------------------------------------------------ TensorFlow side

    def tfp_distribution(self, parameters: Sequence[tf.Tensor]) -> Any:
        """Independent int32 Bernoullis with the logits ``parameters[0]`` [B, P], as flat events."""
        import tensorflow as tf
        import tensorflow_probability as tfp
        tfd = tfp.distributions
        return FlatEvents(tfd.Independent(tfd.Bernoulli(logits=parameters[0], dtype=tf.int32),
                                          reinterpreted_batch_ndims=1), self.action_shape)

    def named_parameters(self, parameters: Sequence[tf.Tensor]) -> dict[str, tf.Tensor]:
        """``{"logits": [B, *A]}`` from ``parameters`` (the logits [B, P])."""
        import tensorflow as tf
        return {"logits": tf.reshape(parameters[0], (-1,) + self.action_shape)}

    def deterministic(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
        """Bits [B, *A] (int32): 1 where the logit in ``parameters[0]`` is positive."""
        import tensorflow as tf
        return tf.reshape(tf.cast(parameters[0] > 0.0, tf.int32), (-1,) + self.action_shape)

    def sample(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
        """Bits [B, *A] (int32) from the logits ``parameters[0]``: each bit is 1 with probability sigmoid(logit)."""
        import tensorflow as tf
        logits = parameters[0]
        uniform = tf.random.uniform(tf.shape(logits))
        return tf.reshape(tf.cast(uniform < tf.sigmoid(logits), tf.int32), (-1,) + self.action_shape)

    # ------------------------------------------------------------------ NumPy side

    def act(self, outputs: np.ndarray, free: Arrays, rng: np.random.Generator | None) -> np.ndarray:
        """Bits [B, *A] (int32) from the logits ``outputs`` [B, P]: logit > 0, or a draw with ``rng``
        below sigmoid(logit) when ``rng`` is not None. ``free`` is unused (no free parameters)."""
        if rng is None:
            chosen = outputs > 0.0
        else:
            chosen = rng.random(outputs.shape, dtype=np.float32) < 1.0 / (1.0 + np.exp(-outputs))
        return chosen.astype(np.int32).reshape((len(outputs),) + self.action_shape)
