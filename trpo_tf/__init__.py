"""Trust Region Policy Optimization on TensorFlow 2, with policies exported as SavedModels."""

from trpo_tf.config import TRPOConfig
from trpo_tf.trpo import TRPO

__version__ = "0.1.0"
__all__ = ["TRPO", "TRPOConfig", "__version__"]
