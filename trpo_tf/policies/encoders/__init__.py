"""Observation encoders: one class per kind of observation, each with its NumPy and TensorFlow sides.

- :class:`~.flat.FlatEncoder`: ``Box`` vectors and matrices, flattened;
- :class:`~.one_hot.OneHotEncoder`: ``Discrete`` and ``MultiDiscrete``, one-hot;
- :class:`~.image.ImageEncoder`: image ``Box`` es (uint8 frames, bool grids, float frames in [0, 1]),
  kept as frames for a CNN;
- :class:`~.dict.DictEncoder`: a ``Dict`` of the above, one encoder per key.

Importing this package imports every module in it (TensorFlow-free), and each class registers
itself; :func:`make_encoder` picks the one for a space. A new kind of observation is one new
module here — copy ``flat.py`` — plus its tests. See :mod:`.base` for what a class provides.
"""

from __future__ import annotations

import importlib
import pkgutil

from trpo_tf.policies.encoders.base import (ENCODERS, INPUT_NAME, KEY_PATTERN, NON_FINITE_MESSAGE,
                                            SUPPORTED_OBSERVATION_SPACES, LeafEncoder, ObservationEncoder,
                                            make_encoder)

for _module in sorted(module.name for module in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

from trpo_tf.policies.encoders.image import CNNS, ImageInput, image_input  # noqa: E402 - registered above

CHOICES = ("auto", "mlp") + CNNS
"""The values of ``TRPOConfig.encoder``: how image ``Box`` es are read (see :func:`image_input`)."""

__all__ = ["CHOICES", "CNNS", "ENCODERS", "INPUT_NAME", "ImageInput", "KEY_PATTERN", "LeafEncoder",
           "NON_FINITE_MESSAGE", "ObservationEncoder", "SUPPORTED_OBSERVATION_SPACES", "image_input", "make_encoder"]
