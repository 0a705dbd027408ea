"""What every observation encoder is: the base class, its registry and the factory that picks one.

An encoder turns raw observations — an array [B, *obs_shape], or for a ``Dict`` space a dict
of such arrays by key — into what the policy's and value's models read:

- flat features [B, D] (float32), normalized afterwards with running statistics: its
  :meth:`~ObservationEncoder.numpy` side (acting during rollouts, in any process) and its
  :meth:`~ObservationEncoder.tensorflow` side (inside the compiled graphs and the export)
  compute the same map;
- frames by name (:meth:`~ObservationEncoder.frames`), which a CNN reads (:mod:`trpo_tf.policies.cnn`).

An encoder also knows its raw inputs: :attr:`~ObservationEncoder.inputs` (name → shape and
dtype, as exported signatures take them), :meth:`~ObservationEncoder.check` (a user's batch,
validated and converted in NumPy) and :meth:`~ObservationEncoder.tensorflow_checked` (the same
inside an exported graph). Encoders are plain Python objects, TensorFlow imported inside their
TensorFlow side only, so an acting snapshot that holds one unpickles with NumPy alone.

Each class registers itself in :data:`ENCODERS` when its module is imported;
:func:`make_encoder` asks them in order of ``priority`` which one reads a space. The package
imports every module in it, so a new encoder is one new module.

Shapes: B is the batch size, D the flat feature size.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np

from trpo_tf.errors import UnsupportedSpaceError

if TYPE_CHECKING:
    import tensorflow as tf

INPUT_NAME = "observation"
"""The name of a non-Dict observation, in frames and in exported signatures."""
KEY_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
"""A Dict key that can name a TensorFlow signature input (and a Python keyword argument)."""
NON_FINITE_MESSAGE = "observation holds NaN or infinity"
"""What an exported graph's check says of a non-finite observation."""
FLOAT32_MAX = float(np.finfo(np.float32).max)

ENCODERS: list[type[ObservationEncoder]] = []
"""Every registered encoder class, in the order :func:`make_encoder` asks them (highest ``priority`` first)."""


class ObservationEncoder:
    """Raw observations → flat features [B, D] and frames by name; see the module docstring.

    Attributes every encoder has: ``dim`` (D), ``inputs`` (raw input name → (shape, dtype name)),
    ``images`` (frame name → :class:`~trpo_tf.policies.encoders.image.ImageInput`; empty without
    frames), ``keys`` (a ``Dict``'s keys in order; None otherwise) and ``shape`` (one
    observation's shape; None for a ``Dict``).

    A subclass sets ``spaces`` (the space types it may read) and, where two classes read the same
    type, ``priority`` and :meth:`reads`.
    """

    spaces: ClassVar[tuple[type[gym.Space], ...]] = ()
    priority: ClassVar[int] = 0

    dim: int
    inputs: dict[str, tuple[tuple[int, ...], str]]
    images: dict[str, Any]
    keys: tuple[str, ...] | None = None
    shape: tuple[int, ...] | None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.spaces:
            ENCODERS.append(cls)
            ENCODERS.sort(key=lambda registered: -registered.priority)

    @classmethod
    def reads(cls, space: gym.Space, encoder: str) -> bool:
        """Whether this class reads ``space`` under ``TRPOConfig.encoder`` = ``encoder`` (default: by type)."""
        return isinstance(space, cls.spaces)

    @classmethod
    def for_space(cls, space: gym.Space, encoder: str, name: str) -> ObservationEncoder:
        """The encoder of this class for ``space``, its raw input called ``name``."""
        raise NotImplementedError

    def check(self, observations: Any) -> Any:
        """``observations`` as a batch [B, *obs_shape] (a dict of them for a ``Dict``) in the dtypes of
        :attr:`inputs`; a single observation gains B = 1. ValueError naming what does not fit."""
        raise NotImplementedError

    def numpy(self, observations: Any) -> np.ndarray:
        """Raw observations [B, *obs_shape] → flat features [B, D] in NumPy."""
        raise NotImplementedError

    def tensorflow(self, observations: Any) -> tf.Tensor:
        """Raw observations [B, *obs_shape] → flat features [B, D] in the TensorFlow graph."""
        raise NotImplementedError

    def tensorflow_feature_mask(self, entry_mask: Any) -> tf.Tensor:
        """``entry_mask``: float32 [B, *obs_shape] (1 where an observation's entry is usable, else 0; a dict
        of them by key for a ``Dict``) → a mask [B, D] that multiplies the features: 0 for every feature a
        non-usable entry feeds."""
        raise NotImplementedError

    def tensorflow_checked(self, observations: Any) -> tuple[Any, Any]:
        """Inside an exported graph: (usable observations, float32 mask of the usable entries), after
        checks that raise on a wrong shape or a non-finite value. Converters drop the raising checks
        (TFLite, tf2onnx): there the usable values stay finite and the mask marks what was not."""
        raise NotImplementedError

    def frames(self, observations: Any) -> dict[str, Any]:
        """The frames of ``observations`` (NumPy or TensorFlow) by name, as they come [B, *frame_shape]."""
        raise NotImplementedError

    def tensor_spec(self) -> Any:
        """The TensorSpec of a batch of raw observations (a dict of them by key for a ``Dict``)."""
        raise NotImplementedError


class LeafEncoder(ObservationEncoder):
    """An encoder of one raw input, named ``name``, of ``shape`` and dtype ``dtype``.

    ``space`` is the observation space (its shape is the input's shape), ``dtype`` the name of the
    dtype the input is fed in ("float32" or "uint8"), ``dim`` the number of flat features D it gives.
    Raises :class:`UnsupportedSpaceError` when ``space`` has no elements.

    Subclasses give :meth:`numpy`, :meth:`tensorflow` and :meth:`tensorflow_feature_mask`, and
    may refine :meth:`check_values` and :meth:`usable_range`.
    """

    def __init__(self, space: gym.Space, name: str, dtype: str, dim: int):
        self.name = name
        self.shape: tuple[int, ...] = tuple(space.shape or ())
        self.dim = dim
        self.dtype = dtype
        self.inputs = {name: (self.shape, dtype)}
        self.images = {}
        if int(np.prod(self.shape, dtype=np.int64)) == 0:
            raise UnsupportedSpaceError(f"observation space {space!r} has no elements")

    def check(self, observations: Any) -> np.ndarray:
        """``observations`` (array-like numbers) as a batch [B, *shape] in this input's dtype; a single
        observation of ``shape`` gains B = 1. ValueError when they are not numbers, their shape does not fit,
        or :meth:`check_values` refuses their values."""
        array = np.asarray(observations)
        if array.dtype.kind not in "biuf":
            raise ValueError(f"observations must be numbers, got an array of {array.dtype}")
        if array.shape == self.shape:
            array = array[None]
        if array.shape[1:] != self.shape:
            raise ValueError(f"observations of shape {array.shape} do not fit the observation space: "
                             f"expected [batch, {', '.join(map(str, self.shape))}]".replace(", ]", "]"))
        return self.check_values(array)

    def check_values(self, array: np.ndarray) -> np.ndarray:
        """``array``, a batch [B, *shape] of numbers → the batch in this input's dtype; ValueError when its
        values do not fit."""
        return array.astype(np.dtype(self.dtype), copy=False)

    def usable_range(self) -> tuple[float, float]:
        """The interval an exported graph clips this input's values to where its checks are dropped."""
        return -FLOAT32_MAX, FLOAT32_MAX

    def tensorflow_checked(self, observations: Any) -> tuple[Any, Any]:
        """Inside an exported graph: ``observations`` [B, *shape] → (usable observations, float32 mask
        [B, *shape] of the finite entries). The graph checks the shape (``EnsureShape``) and raises on NaN or
        infinity (``CheckNumerics``, with :data:`NON_FINITE_MESSAGE`); where converters drop those checks,
        NaN becomes 0 and the values are clipped to :meth:`usable_range`."""
        import tensorflow as tf
        observations = self.shape_checked(observations)
        message = NON_FINITE_MESSAGE if self.name == INPUT_NAME else f"{NON_FINITE_MESSAGE} (input {self.name})"
        observations = tf.debugging.check_numerics(observations, message,
                                                   name=f"check_observation_finite{self.op_suffix}")
        # Where the check above is dropped (TFLite, tf2onnx): NaN → 0 and ±inf → the range's ends keep the
        # features finite, then the mask zeroes those they feed. tf2onnx turns a select into arithmetic
        # (NaN · 0 = NaN) unless its condition is an IsNaN, hence this form.
        usable = tf.where(tf.math.is_nan(observations), tf.zeros_like(observations), observations)
        usable = tf.clip_by_value(usable, *self.usable_range())
        return usable, tf.cast(tf.math.is_finite(observations), tf.float32)

    def shape_checked(self, observations: tf.Tensor) -> tf.Tensor:
        """``observations`` with a graph check that they are [B, *shape] (an ``EnsureShape`` op)."""
        import tensorflow as tf
        return tf.ensure_shape(observations, (None,) + self.shape, name=f"check_observation_shape{self.op_suffix}")

    @property
    def op_suffix(self) -> str:
        """What names this input's check ops apart from another input's: "" for the one ``observation``."""
        return "" if self.name == INPUT_NAME else f"_{self.name}"

    def frames(self, observations: Any) -> dict[str, Any]:
        """No frames: ``{}`` whatever ``observations`` hold (:class:`~trpo_tf.policies.encoders.image.ImageEncoder`
        overrides it)."""
        return {}

    def tensor_spec(self) -> Any:
        """``tf.TensorSpec([None, *shape], dtype, name=name)``: a batch of this raw input."""
        import tensorflow as tf
        return tf.TensorSpec((None,) + self.shape, tf.as_dtype(self.dtype), name=self.name)


def make_encoder(space: gym.Space, encoder: str = "auto", name: str = INPUT_NAME) -> ObservationEncoder:
    """The encoder that reads ``space`` (``encoder``: ``TRPOConfig.encoder``), its raw input called ``name``;
    :class:`UnsupportedSpaceError` naming the space when no registered encoder reads it."""
    for candidate in ENCODERS:
        if candidate.reads(space, encoder):
            return candidate.for_space(space, encoder, name)
    raise UnsupportedSpaceError(f"unsupported observation space {space!r}: trpo_tf supports "
                                f"{SUPPORTED_OBSERVATION_SPACES}")


SUPPORTED_OBSERVATION_SPACES = ("Box (vectors flattened; rank-3 uint8 frames, or float frames in [0, 1], through "
                                "a CNN), Discrete and MultiDiscrete (one-hot), and Dict of those (one encoder per key)")
