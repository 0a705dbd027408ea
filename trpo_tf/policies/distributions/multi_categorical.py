"""MultiDiscrete actions → independent Categoricals, one per sub-space.

K sub-spaces of sizes n_k use K·max(n_k) network outputs: logits [B, K, max(n_k)], the unused
entries of smaller sub-spaces pinned to a large negative constant (probability 0). Actions are
stored as zero-based indices [B, *nvec.shape]; the environment counts from each sub-space's
``start``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import gymnasium as gym
import numpy as np

from trpo_tf.errors import UnsupportedSpaceError
from trpo_tf.policies.distributions.base import FlatEvents
from trpo_tf.policies.distributions.categorical import Categorical

if TYPE_CHECKING:
    import tensorflow as tf


class MultiCategorical(Categorical):
    """``MultiDiscrete`` → K independent Categoricals with padded logits [B, K, max(nvec)]."""

    name = "multi_categorical"
    spaces = (gym.spaces.MultiDiscrete,)

    @classmethod
    def for_space(cls, space: gym.Space, init_log_std: float = 0.0) -> MultiCategorical:
        """The K Categoricals of ``space`` (sizes ``nvec``, starts ``start``, A = ``nvec.shape``);
        :class:`UnsupportedSpaceError` unless it is ``MultiDiscrete``. ``init_log_std`` is ignored."""
        if not isinstance(space, gym.spaces.MultiDiscrete):
            raise UnsupportedSpaceError(f"the multi_categorical distribution needs a MultiDiscrete action space, "
                                        f"got {space!r}")
        nvec = np.asarray(space.nvec)
        return cls(nvec, np.asarray(space.start), tuple(nvec.shape))

    def tfp_distribution(self, parameters: Sequence[tf.Tensor]) -> Any:
        """K independent Categoricals with the padded logits [B, K, W] from ``parameters[0]``, as flat events."""
        import tensorflow_probability as tfp
        tfd = tfp.distributions
        return FlatEvents(tfd.Independent(tfd.Categorical(logits=self.logits(parameters[0])),
                                          reinterpreted_batch_ndims=1), self.action_shape)

    def named_parameters(self, parameters: Sequence[tf.Tensor]) -> dict[str, tf.Tensor]:
        """``{"logits": [B, K, W]}`` (padded) from ``parameters[0]``."""
        return {"logits": self.logits(parameters[0])}

    def _shaped(self, choices: tf.Tensor) -> tf.Tensor:
        import tensorflow as tf
        return tf.reshape(choices, (-1,) + self.action_shape)

    def _stored(self, choices: np.ndarray) -> np.ndarray:
        return choices.reshape((len(choices),) + self.action_shape)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """Stored zero-based ``actions`` [B, *A] with each sub-space's start added."""
        return actions + self.starts.reshape(self.action_shape)
