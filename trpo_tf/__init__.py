"""Trust Region Policy Optimization on TensorFlow 2, with policies exported as SavedModels.

Importing the package changes nothing in the host program and imports no TensorFlow: the
names below are imported on first use. :func:`quiet` quiets TensorFlow's start-up logging, as
the ``trpo-tf`` command does.
"""

from __future__ import annotations

import importlib
from typing import Any

from trpo_tf.startup import quiet

__version__ = "0.1.0"
__all__ = ["CheckpointCallback", "EvalCallback", "StopOnNoImprovement", "StopOnReward", "TRPO", "TRPOConfig",
           "__version__", "quiet", "tune"]

_LAZY = {"TRPO": "trpo_tf.trpo", "TRPOConfig": "trpo_tf.config", "CheckpointCallback": "trpo_tf.checkpoint",
         "EvalCallback": "trpo_tf.callbacks", "StopOnReward": "trpo_tf.callbacks",
         "StopOnNoImprovement": "trpo_tf.callbacks", "tune": "trpo_tf.tuning"}


def __getattr__(name: str) -> Any:
    """Import ``TRPO``, the callbacks (and TensorFlow) and ``tune`` (and Optuna) on first use, so
    ``trpo-tf --help`` answers at once."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trpo_tf' has no attribute {name!r}")
