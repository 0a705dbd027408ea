"""Trust Region Policy Optimization on TensorFlow 2, with policies exported as SavedModels."""

from __future__ import annotations

import importlib
from typing import Any

from trpo_tf import startup as _startup

_startup.quiet_tensorflow_logging()  # before anything imports TensorFlow; a level the user set stays
_startup.use_xla_cache()  # before TensorFlow compiles; flags the user set stay
__version__ = "0.1.0"
__all__ = ["CheckpointCallback", "EvalCallback", "StopOnNoImprovement", "StopOnReward", "TRPO", "TRPOConfig",
           "__version__", "tune"]

_LAZY = {"TRPO": "trpo_tf.trpo", "TRPOConfig": "trpo_tf.config", "CheckpointCallback": "trpo_tf.checkpoint",
         "EvalCallback": "trpo_tf.callbacks", "StopOnReward": "trpo_tf.callbacks",
         "StopOnNoImprovement": "trpo_tf.callbacks"}
_LAZY_WITHOUT_TENSORFLOW = {"tune": "trpo_tf.tuning"}  # imports Optuna (and TensorFlow) only when called


def __getattr__(name: str) -> Any:
    """Import ``TRPO``, the callbacks (and TensorFlow) and ``tune`` on first use, so ``trpo-tf --help``
    answers at once."""
    if name in _LAZY:
        _startup.import_tensorflow()
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _LAZY_WITHOUT_TENSORFLOW:
        return getattr(importlib.import_module(_LAZY_WITHOUT_TENSORFLOW[name]), name)
    raise AttributeError(f"module 'trpo_tf' has no attribute {name!r}")
