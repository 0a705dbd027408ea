"""Policies: observation encoders, networks, action heads, and the policy that joins them.

``policies`` knows no algorithm: the trust-region update, the sampler and the export use
what :class:`Policy` and :class:`PolicySnapshot` offer.
"""

from trpo_tf.errors import UnsupportedSpaceError
from trpo_tf.policies.encoders import SUPPORTED_OBSERVATION_SPACES, ObservationEncoder
from trpo_tf.policies.heads import (HEAD_KINDS, SUPPORTED_ACTION_SPACES, ActionHead, BernoulliHead,
                                    CategoricalHead, GaussianHead, action_head, kl_divergence)
from trpo_tf.policies.networks import mlp, numpy_forward, policy_network, value_network
from trpo_tf.policies.policy import Policy, PolicySnapshot, make_policy

__all__ = [
    "ActionHead", "BernoulliHead", "CategoricalHead", "GaussianHead", "HEAD_KINDS", "ObservationEncoder",
    "Policy", "PolicySnapshot", "SUPPORTED_ACTION_SPACES", "SUPPORTED_OBSERVATION_SPACES",
    "UnsupportedSpaceError", "action_head", "kl_divergence", "make_policy", "mlp", "numpy_forward",
    "policy_network", "value_network",
]
