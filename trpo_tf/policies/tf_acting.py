"""Acting through TensorFlow, for policies that have no NumPy copy (a network or encoder NumPy cannot run).

:class:`CompiledActor` is what such a policy hands the in-process sampler instead of a
:class:`~trpo_tf.policies.acting.PolicySnapshot`: it has the same ``act`` and ``features``, but
computes the network's outputs with one compiled TensorFlow call per vectorized step, batched
over the environments. Actions are then drawn from those outputs by the head's NumPy acting (the
class of its ``kind`` in :mod:`trpo_tf.policies.acting`) with the sampler's generator, exactly as
the snapshot draws them. It lives in this process only: sampling workers need a picklable
snapshot, so :class:`~trpo_tf.TRPO` refuses workers for such a policy.

Shapes: N is the number of environments (the batch), D the flat feature size, A the action shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import numpy as np
import tensorflow as tf

from trpo_tf.policies.acting import ACTING

if TYPE_CHECKING:
    from trpo_tf.policies.policy import Policy


class CompiledActor:
    """Acts with ``policy``'s current weights through compiled TensorFlow calls (see the module docstring).

    Nothing is copied: each call reads the policy's variables as they are then, so an actor made
    once serves the whole training (the head's arrays, such as the Gaussian's log-std, are read
    at each call as well).
    """

    def __init__(self, policy: Policy):
        self.policy = policy
        observations = tf.TensorSpec((None,) + tuple(policy.encoder.shape), tf.float32)
        self._outputs = tf.function(lambda o: policy.network(policy.features(o)), input_signature=[observations])
        self._features = tf.function(policy.features, input_signature=[observations])

    def features(self, observations: np.ndarray) -> np.ndarray:
        """Raw observations [N, *obs_shape] → normalized features [N, D], in one compiled call."""
        return self._features(np.asarray(observations, np.float32)).numpy()

    def act(self, observations: np.ndarray, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
        """Raw observations [N, *obs_shape] → (actions for the environment, actions as stored in a batch).

        Actions are drawn with ``rng``; with ``rng`` None they are the most probable ones.
        """
        outputs = self._outputs(np.asarray(observations, np.float32)).numpy()
        arrays = self.policy.head.numpy_arrays()
        acting = ACTING[self.policy.head.kind]
        actions = acting.act(arrays, outputs, rng)
        return acting.to_env(arrays, actions), actions

    def __reduce__(self) -> NoReturn:
        raise TypeError("a CompiledActor acts through TensorFlow in this process and cannot be pickled; "
                        "sampling workers need a policy that acts in NumPy (Policy.acts_in_numpy)")

    def __repr__(self) -> str:
        return f"CompiledActor({self.policy.name}, head={self.policy.head.kind})"

