"""Running observation statistics kept as Keras state, so they are checkpointed and exported."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from trpo_tf.policies.acting import CLIP, EPSILON, NumpyNormalizer


class ObservationNormalizer(keras.layers.Layer):
    """Maps features x [B, D] to clip((x - mean) / sqrt(var + 1e-8), -10, 10).

    ``mean``, ``var`` and ``count`` are non-trainable weights: the trust-region step and the
    value fit never move them, and they travel with every checkpoint and export. They change
    only through :meth:`update`, once per batch, from NumPy. When ``enabled`` is False the
    layer is the identity (the weights stay at mean 0, var 1). ``dim`` is D.
    """

    def __init__(self, dim: int, enabled: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self.dim = dim
        self.enabled = enabled
        self.mean = self.add_weight(shape=(dim,), initializer="zeros", trainable=False, name="mean")
        self.var = self.add_weight(shape=(dim,), initializer="ones", trainable=False, name="var")
        self.count = self.add_weight(shape=(), initializer="zeros", trainable=False, name="count",
                                     dtype="float64")
        self.built = True  # the weights exist: Keras export need not call the layer first

    def call(self, features: Any) -> Any:
        if not self.enabled:
            return features
        scaled = (features - self.mean) / keras.ops.sqrt(self.var + EPSILON)
        return keras.ops.clip(scaled, -CLIP, CLIP)

    def update(self, batch: np.ndarray) -> None:
        """Merge the statistics of ``batch`` [B, D] into the running ones (Chan et al., 1979)."""
        if not self.enabled or len(batch) == 0 or self.dim == 0:
            return
        batch = np.asarray(batch, dtype=np.float64).reshape(-1, self.dim)
        n_a, n_b = float(self.count.numpy()), float(len(batch))
        mean_a, var_a = self.mean.numpy().astype(np.float64), self.var.numpy().astype(np.float64)
        mean_b, var_b = batch.mean(axis=0), batch.var(axis=0)
        total = n_a + n_b
        delta = mean_b - mean_a
        mean = mean_a + delta * n_b / total
        var = (var_a * n_a + var_b * n_b + delta**2 * n_a * n_b / total) / total
        self.mean.assign(mean.astype(np.float32))
        self.var.assign(var.astype(np.float32))
        self.count.assign(total)

    def numpy_normalize(self) -> "NumpyNormalizer":
        """A NumPy copy of the current statistics, for acting without TensorFlow calls."""
        return NumpyNormalizer(self.mean.numpy(), self.var.numpy(), self.enabled)


class RewardScaler(keras.layers.Layer):
    """Divides rewards by the running standard deviation of the discounted return.

    The scale that ``VecNormalize(norm_reward=True)`` applies in Stable-Baselines3: per
    environment, R ← γ·R + r (R reset to 0 when an episode ends), and rewards are divided by
    sqrt(Var[R] + 1e-8). Keeps value targets of order one whatever the reward's units. State
    (the running R [N] and the statistics of R) is Keras weights, so it is checkpointed.
    ``n_envs`` is N; ``gamma`` the discount γ.
    """

    def __init__(self, n_envs: int, gamma: float, **kwargs: Any):
        super().__init__(**kwargs)
        self.gamma = gamma
        self.return_stats = ObservationNormalizer(1, name="return_stats")
        self.returns = self.add_weight(shape=(n_envs,), initializer="zeros", trainable=False, name="returns")
        self.built = True

    def scale(self, rewards: np.ndarray, ended: np.ndarray) -> np.ndarray:
        """rewards, ended [T, N] → scaled rewards [T, N], after updating the statistics with this batch."""
        running = self.returns.numpy().tolist()
        discounted = np.empty(rewards.shape, dtype=np.float64)
        for n in range(rewards.shape[1]):  # Python floats: cheaper than NumPy on [N] rows
            column = []
            for reward, done in zip(rewards[:, n].tolist(), ended[:, n].tolist()):
                running[n] = running[n] * self.gamma + reward
                column.append(running[n])
                if done:
                    running[n] = 0.0
            discounted[:, n] = column
        self.returns.assign(np.asarray(running, dtype=np.float32))
        self.return_stats.update(discounted.reshape(-1, 1))
        return (rewards / np.sqrt(self.return_stats.var.numpy()[0] + EPSILON)).astype(np.float32)
