"""Policies: observation encoders, networks, action distributions, and the policy that joins them.

``policies`` knows no algorithm: the trust-region update, the sampler and the export use
what :class:`Policy` and :class:`PolicySnapshot` offer. Names are imported on first use, so
a process that only acts (:mod:`trpo_tf.policies.acting`, with the NumPy sides of
:mod:`~trpo_tf.policies.encoders` and :mod:`~trpo_tf.policies.distributions`) never imports TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what mypy and readers see; at run time each name is imported on first use
    from trpo_tf.errors import UnsupportedSpaceError
    from trpo_tf.policies.acting import PolicySnapshot, numpy_forward
    from trpo_tf.policies.distributions import DISTRIBUTIONS, ActionDistribution, kl_divergence, make_distribution
    from trpo_tf.policies.encoders import SUPPORTED_OBSERVATION_SPACES, ObservationEncoder, make_encoder
    from trpo_tf.policies.head import ActionHead, action_head
    from trpo_tf.policies.networks import HeadedNetwork, NetworkSpec, mlp, policy_network, value_network
    from trpo_tf.policies.policy import Policy, make_policy
    from trpo_tf.policies.tf_acting import CompiledActor

_HOMES = {
    "trpo_tf.errors": ["UnsupportedSpaceError"],
    "trpo_tf.policies.acting": ["PolicySnapshot", "numpy_forward"],
    "trpo_tf.policies.distributions": ["DISTRIBUTIONS", "ActionDistribution", "kl_divergence", "make_distribution"],
    "trpo_tf.policies.encoders": ["SUPPORTED_OBSERVATION_SPACES", "ObservationEncoder", "make_encoder"],
    "trpo_tf.policies.head": ["ActionHead", "action_head"],
    "trpo_tf.policies.networks": ["HeadedNetwork", "NetworkSpec", "mlp", "policy_network", "value_network"],
    "trpo_tf.policies.policy": ["Policy", "make_policy"],
    "trpo_tf.policies.tf_acting": ["CompiledActor"],
}
_LAZY = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trpo_tf.policies' has no attribute {name!r}")
