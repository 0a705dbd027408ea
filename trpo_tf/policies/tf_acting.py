"""Acting through TensorFlow, for policies that have no NumPy copy (a network or encoder NumPy cannot run).

:class:`CompiledActor` is what such a policy hands the in-process sampler instead of a
:class:`~trpo_tf.policies.acting.PolicySnapshot`: it has the same ``act`` and ``features``, but
computes the network's outputs with one compiled TensorFlow call per vectorized step, batched
over the environments. Actions are then drawn from those outputs by the action distribution's
NumPy side with the sampler's generator, exactly as the snapshot draws them. It lives in this process only: sampling workers need a picklable
snapshot, so :class:`~trpo_tf.TRPO` refuses workers for such a policy.

Shapes: N is the number of environments (the batch), D the flat feature size, A the action shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

if TYPE_CHECKING:
    from trpo_tf.policies.policy import Policy


class CompiledActor:
    """Acts like a :class:`~trpo_tf.policies.acting.PolicySnapshot` (same :meth:`act` and
    :meth:`features`, same random draws from the distribution's NumPy side), but computes the network's
    outputs (through the CNN trunk, if any) with one compiled call of
    :meth:`~trpo_tf.policies.policy.Policy.compiled_outputs` per vectorized step.

    Like a snapshot it is made once per iteration and holds that iteration's observation
    statistics and free parameters (the Gaussian's log-std); the network's weights are read at each
    call, and the policy does not change while it samples.
    """

    def __init__(self, policy: Policy):
        self.encoder = policy.encoder
        self.normalizer = policy.normalizer.numpy_normalize()
        self.distribution = policy.head.action_distribution
        self.free_parameters = policy.head.free_arrays()
        self.model_inputs = policy.model_inputs
        self.recurrent = policy.recurrent
        self.state_size = policy.state_size
        self.outputs = policy.compiled_step() if policy.recurrent else policy.compiled_outputs()
        self.name = policy.name

    def features(self, observations: Any) -> Any:
        """Raw observations [N, *obs_shape] (a dict of them for a ``Dict``) → model inputs, in NumPy."""
        return self.model_inputs(self.normalizer(self.encoder.numpy(observations)), observations)

    def act(self, observations: Any, rng: np.random.Generator | None,
            masks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw observations [N, *obs_shape] → (actions for the environment, actions as stored in a batch).

        Actions are drawn with ``rng``; with ``rng`` None they are the most probable ones; with action
        ``masks`` [N, M] (nonzero: allowed) only allowed ones.
        """
        outputs = self.outputs(self.features(observations)).numpy()
        return self.distribution.actions(outputs, self.free_parameters, rng, masks)

    def act_recurrent(self, observations: Any, states: np.ndarray, rng: np.random.Generator | None,
                      masks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A recurrent policy's :meth:`act`: raw observations [N, *obs_shape] read from states [N, S] →
        (actions for the environment, actions as stored, new states [N, S]); ``rng`` and ``masks`` as in :meth:`act`."""
        outputs, states = self.outputs(self.features(observations), np.asarray(states, np.float32))
        env_actions, stored = self.distribution.actions(np.asarray(outputs), self.free_parameters, rng, masks)
        return env_actions, stored, np.asarray(states)

    def __reduce__(self) -> NoReturn:
        raise TypeError("a CompiledActor acts through TensorFlow in this process and cannot be pickled; "
                        "sampling workers need a policy that acts in NumPy (Policy.acts_in_numpy)")

    def __repr__(self) -> str:
        return f"CompiledActor({self.name}, distribution={self.distribution.name})"
