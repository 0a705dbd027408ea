"""Sampling: environments, the :class:`Batch` they produce, and the sampler that steps them.

This package knows no TensorFlow: it acts with a NumPy :class:`~trpo_tf.policies.PolicySnapshot`.
A sampler offers ``collect(policy, steps)``, ``state()``, ``load_state(state)``,
``environment_state()``, ``load_environment_state(bytes, fresh_seed)`` and ``close()``.
"""

from trpo_tf.sampling.batch import Batch
from trpo_tf.sampling.environments import (EnvLike, SerialVectorEnv, check_env_id, env_module, environment_state,
                                           make_env, make_vector_env, refuse_recorded_module,
                                           restore_environment_state)
from trpo_tf.sampling.sampler import Sampler

__all__ = ["Batch", "EnvLike", "Sampler", "SerialVectorEnv", "check_env_id", "env_module", "environment_state",
           "make_env", "make_vector_env", "refuse_recorded_module", "restore_environment_state"]
