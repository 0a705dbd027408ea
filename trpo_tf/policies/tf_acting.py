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

from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from trpo_tf.policies.acting import ACTING

if TYPE_CHECKING:
    from trpo_tf.policies.policy import Policy


class CompiledActor:
    """Acts like a :class:`~trpo_tf.policies.acting.PolicySnapshot` (same :meth:`act` and
    :meth:`features`, same random draws from the head's NumPy acting), but computes the network's
    outputs (through the CNN trunk, if any) with one compiled call of
    :meth:`~trpo_tf.policies.policy.Policy.compiled_outputs` per vectorized step.

    Like a snapshot it is made once per iteration and holds that iteration's observation
    statistics and head arrays (the Gaussian's log-std); the network's weights are read at each
    call, and the policy does not change while it samples.
    """

    def __init__(self, policy: Policy):
        self.encoder = policy.encoder
        self.normalizer = policy.normalizer.numpy_normalize()
        self.head_kind = policy.head.kind
        self.head_arrays = policy.head.numpy_arrays()
        self.model_inputs = policy.model_inputs
        self.outputs = policy.compiled_outputs()
        self.name = policy.name

    def features(self, observations: Any) -> Any:
        """Raw observations [N, *obs_shape] (a dict of them for a ``Dict``) → model inputs, in NumPy."""
        return self.model_inputs(self.normalizer(self.encoder.numpy(observations)), observations)

    def act(self, observations: Any, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
        """Raw observations [N, *obs_shape] → (actions for the environment, actions as stored in a batch).

        Actions are drawn with ``rng``; with ``rng`` None they are the most probable ones.
        """
        acting = ACTING[self.head_kind]
        actions = acting.act(self.head_arrays, self.outputs(self.features(observations)).numpy(), rng)
        return acting.to_env(self.head_arrays, actions), actions

    def __reduce__(self) -> NoReturn:
        raise TypeError("a CompiledActor acts through TensorFlow in this process and cannot be pickled; "
                        "sampling workers need a policy that acts in NumPy (Policy.acts_in_numpy)")

    def __repr__(self) -> str:
        return f"CompiledActor({self.name}, head={self.head_kind})"
