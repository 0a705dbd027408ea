"""The policy as one object; it hands out picklable NumPy snapshots (:mod:`trpo_tf.policies.acting`) for acting.

Shapes: B is the batch size, D the flat feature size, A the action shape.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from trpo_tf.normalization import ObservationNormalizer
from trpo_tf.policies.acting import PolicySnapshot
from trpo_tf.policies.encoders import ObservationEncoder
from trpo_tf.policies.heads import ActionHead, action_head
from trpo_tf.policies.networks import dense_arrays, policy_network


class Policy(keras.Model):
    """Raw observations [B, *obs_shape] → action distribution.

    ``encoder`` (observations → features [B, D]), ``normalizer`` (running statistics of the
    features, updated once per batch by :meth:`observe`), ``network`` (normalized features →
    head outputs [B, head.param_size]) and ``head`` (outputs and its own parameters → TFP
    distribution and actions). The value function reads the same normalized features
    (:meth:`features`). Checkpoints and exports take the whole object.
    """

    def __init__(self, encoder: ObservationEncoder, normalizer: ObservationNormalizer, network: keras.Model,
                 head: ActionHead, **kwargs: Any):
        super().__init__(name=kwargs.pop("name", "policy"), **kwargs)
        self.encoder = encoder
        self.normalizer = normalizer
        self.network = network
        self.head = head

    def trainable_parameters(self) -> list[tf.Variable]:
        """θ, the variables the trust-region step moves, in the order of the flat vector [P].

        The head's own parameters (the Gaussian's log-std) come first, then the network's.
        Keras 3 wraps its variables; autodiff wants the ``tf.Variable`` behind each.
        """
        return [v.value for v in list(self.head.trainable_variables) + list(self.network.trainable_variables)]

    # ---------------------------------------------------------------- TensorFlow

    def features(self, observations: tf.Tensor) -> tf.Tensor:
        """Raw observations [B, *obs_shape] → normalized features [B, D]."""
        return self.normalizer(self.encoder.tensorflow(observations))

    def distribution_parameters(self, features: tf.Tensor) -> list[tf.Tensor]:
        """η(θ) at normalized ``features`` [B, D] (see :meth:`ActionHead.distribution_parameters`)."""
        return self.head.distribution_parameters(self.network(features))

    def distribution(self, features: tf.Tensor) -> Any:
        """π_θ(· | s) at normalized ``features`` [B, D], as a TFP distribution."""
        return self.head.distribution(self.distribution_parameters(features))

    def frozen_distribution(self, features: tf.Tensor) -> Any:
        """The current distribution at ``features`` [B, D] with its parameters held constant (π_old)."""
        return self.head.distribution([tf.stop_gradient(p) for p in self.distribution_parameters(features)])

    def deterministic_action(self, observations: tf.Tensor) -> tf.Tensor:
        """Raw observations [B, *obs_shape] → most probable actions [B, *A] in environment units."""
        return self.head.deterministic(self.distribution_parameters(self.features(observations)))

    def sample_action(self, observations: tf.Tensor) -> tf.Tensor:
        """Raw observations [B, *obs_shape] → random actions [B, *A] in environment units."""
        return self.head.sample(self.distribution_parameters(self.features(observations)))

    def named_parameters(self, observations: tf.Tensor) -> dict[str, tf.Tensor]:
        """Raw observations [B, *obs_shape] → the distribution's parameters by name."""
        return self.head.named_parameters(self.distribution_parameters(self.features(observations)))

    def call(self, observations: tf.Tensor) -> tf.Tensor:
        return self.deterministic_action(observations)

    # ---------------------------------------------------------------- NumPy

    def observe(self, encoded: np.ndarray) -> None:
        """Merge encoded observations [B, D] into the normalizer's running statistics."""
        self.normalizer.update(encoded)

    def snapshot(self) -> "PolicySnapshot":
        """A frozen NumPy copy of the current policy, picklable, for acting in any process."""
        return PolicySnapshot(encoder=self.encoder, normalizer=self.normalizer.numpy_normalize(),
                              layers=tuple(dense_arrays(self.network)), head_kind=self.head.kind,
                              head_arrays=self.head.numpy_arrays())


def make_policy(observation_space: gym.Space, action_space: gym.Space, hidden: tuple[int, ...], activation: str,
                init_log_std: float, normalize_observations: bool, seed: int,
                action_distribution: str = "gaussian") -> Policy:
    """The built-in policy for these spaces: MLP of ``hidden`` units, head chosen by the action space
    (and, for a Box, by ``action_distribution``: see :func:`~trpo_tf.policies.heads.action_head`)."""
    encoder = ObservationEncoder(observation_space)
    head = action_head(action_space, init_log_std, action_distribution)
    normalizer = ObservationNormalizer(encoder.dim, enabled=normalize_observations)
    network = policy_network(encoder.dim, head.param_size, hidden, activation, seed)
    return Policy(encoder, normalizer, network, head)
