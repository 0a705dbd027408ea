"""The policy as one object; it hands out what acts: a picklable NumPy snapshot (:mod:`trpo_tf.policies.acting`)
when its network is a chain of Dense layers, else a compiled TensorFlow actor (:mod:`trpo_tf.policies.tf_acting`).

Shapes: B is the batch size, D the flat feature size, A the action shape.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from trpo_tf.normalization import ObservationNormalizer
from trpo_tf.policies.acting import NUMPY_ACTIVATIONS, PolicySnapshot
from trpo_tf.policies.encoders import ObservationEncoder
from trpo_tf.policies.heads import ActionHead, action_head
from trpo_tf.errors import NetworkError
from trpo_tf.policies.networks import NetworkSpec, acts_in_numpy, dense_arrays, policy_network
from trpo_tf.policies.tf_acting import CompiledActor


class Policy(keras.Model):
    """Raw observations [B, *obs_shape] → action distribution.

    ``encoder`` (observations → features [B, D]), ``normalizer`` (running statistics of the
    features, updated once per batch by :meth:`observe`), ``network`` (normalized features →
    head outputs [B, head.param_size]) and ``head`` (outputs and its own parameters → TFP
    distribution and actions). The value function reads the same normalized features
    (:meth:`features`). Checkpoints and exports take the whole object.

    ``acts_in_numpy``: whether the network has a NumPy copy (a chain of Dense layers with
    activations :mod:`~trpo_tf.policies.acting` knows); :meth:`actor` hands out what acts.
    """

    def __init__(self, encoder: ObservationEncoder, normalizer: ObservationNormalizer, network: keras.Model,
                 head: ActionHead, **kwargs: Any):
        super().__init__(name=kwargs.pop("name", "policy"), **kwargs)
        self.encoder = encoder
        self.normalizer = normalizer
        self.network = network
        self.head = head
        self.acts_in_numpy = acts_in_numpy(network, encoder.dim)

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

    def actor(self) -> PolicySnapshot | CompiledActor:
        """What acts now, in this process: :meth:`snapshot` when the network acts in NumPy, else the
        policy's :class:`~trpo_tf.policies.tf_acting.CompiledActor` (one compiled call per vectorized step)."""
        return self.snapshot() if self.acts_in_numpy else self._compiled_actor

    @functools.cached_property
    def _compiled_actor(self) -> CompiledActor:
        return CompiledActor(self)

    def snapshot(self) -> "PolicySnapshot":
        """A frozen NumPy copy of the current policy, picklable, for acting in any process.

        NetworkError when the network has no NumPy copy (see :attr:`acts_in_numpy`).
        """
        layers = dense_arrays(self.network) if self.acts_in_numpy else None
        if layers is None:
            raise NetworkError(f"the policy network ({self.network.name}) has no NumPy copy: only a chain of Dense "
                               f"layers with activations {', '.join(NUMPY_ACTIVATIONS)} acts in NumPy; it acts "
                               "through TensorFlow in this process (Policy.actor())")
        return PolicySnapshot(encoder=self.encoder, normalizer=self.normalizer.numpy_normalize(),
                              layers=tuple(layers), head_kind=self.head.kind, head_arrays=self.head.numpy_arrays())


def make_policy(observation_space: gym.Space, action_space: gym.Space, hidden: tuple[int, ...], activation: str,
                init_log_std: float, normalize_observations: bool, seed: int,
                network: NetworkSpec | None = None, action_distribution: str = "gaussian") -> Policy:
    """The policy for these spaces: head chosen by the action space (and, for a Box, by
    ``action_distribution``: see :func:`~trpo_tf.policies.heads.action_head`), network an MLP of
    ``hidden`` units or the user's ``network`` (see :mod:`trpo_tf.policies.networks`) with an output
    layer added."""
    encoder = ObservationEncoder(observation_space)
    head = action_head(action_space, init_log_std, action_distribution)
    normalizer = ObservationNormalizer(encoder.dim, enabled=normalize_observations)
    return Policy(encoder, normalizer, policy_network(encoder.dim, head.param_size, hidden, activation, seed, network),
                  head)
