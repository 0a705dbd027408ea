"""Action distributions: one class per module, each with its TensorFlow side and its NumPy side.

Importing this package imports every module in it (TensorFlow-free: each imports TensorFlow
inside its TensorFlow side's methods), and each module's class registers itself under its
``name`` in :data:`DISTRIBUTIONS`. :func:`make_distribution` picks the one for an action space.

Adding a distribution is one new module here — copy ``gaussian.py`` (a distribution with a free
parameter) or ``bernoulli.py`` (one without) — plus its tests. See :mod:`.base` for what a
class provides.
"""

from __future__ import annotations

import importlib
import pkgutil

from trpo_tf.policies.distributions.base import (DEFAULT_DISTRIBUTION, DISTRIBUTIONS, MASK_NAME, ActionDistribution,
                                                 Arrays, FlatEvents, configurable_names, kl_divergence,
                                                 make_distribution, supported_action_spaces)

# The built-in ones first, in the order messages list them; then any other module here.
_BUILT_IN = ("gaussian", "beta", "categorical", "multi_categorical", "bernoulli")
for _name in _BUILT_IN + tuple(sorted({module.name for module in pkgutil.iter_modules(__path__)} - set(_BUILT_IN))):
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["ActionDistribution", "Arrays", "DEFAULT_DISTRIBUTION", "DISTRIBUTIONS", "FlatEvents", "MASK_NAME",
           "configurable_names", "kl_divergence", "make_distribution", "supported_action_spaces"]
