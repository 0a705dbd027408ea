"""Observation encoders: raw observations → the inputs of the policy's and value's Keras models.

A raw observation is an array [B, *obs_shape] for a ``Box`` or ``Discrete`` space, or a dict
of such arrays (one per key) for a ``Dict`` space. The encoder splits it into

- flat features [B, D] (float32): ``Box`` vectors flattened, ``Discrete`` values one-hot,
  concatenated over the keys of a ``Dict``; the policy normalizes them with running statistics;
- frames, by name (``"observation"``, or the ``Dict`` key): rank-3 image ``Box`` es, kept as
  they come (uint8 [B, H, W, C] or [B, C, H, W]); a CNN (:mod:`trpo_tf.policies.cnn`) reads them.

Which ``Box`` is an image is decided by :func:`image_input`. An encoder has a TensorFlow version
(inside the compiled graphs and the export) and a NumPy version (acting during rollouts); both
compute the same map. Encoders are plain Python objects, so an acting snapshot that holds one
can be pickled to another process.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any, Mapping

import gymnasium as gym
import numpy as np

from trpo_tf.errors import UnsupportedSpaceError

if TYPE_CHECKING:  # imported where used: an acting process unpickles encoders without TensorFlow
    import tensorflow as tf

SUPPORTED_OBSERVATION_SPACES = ("Box (vectors flattened; rank-3 uint8 frames, or float frames in [0, 1], through "
                                "a CNN), Discrete (one-hot), and Dict of those (one encoder per key)")
INPUT_NAME = "observation"  # the name of a non-Dict observation, in frames and in exported signatures
CNNS = ("nature_cnn", "small_cnn")
NATURE_MIN_SIZE = 36  # the Nature CNN's 8×8/4, 4×4/2 and 3×3/1 convolutions need 36×36 pixels
SMALL_MIN_SIZE = 3  # the small CNN's one 3×3 convolution
KEY_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # a TensorFlow signature input and a Python keyword


@dataclasses.dataclass(frozen=True)
class ImageInput:
    """How one image ``Box`` is read: frames of ``shape`` [H, W, C] (or [C, H, W] when
    ``channels_first``) in ``dtype``, multiplied by ``scale`` (1/255 for uint8 pixels, 1 for
    bool grids, which are read as uint8 0/1), through ``cnn``."""

    shape: tuple[int, int, int]
    channels_first: bool
    dtype: str
    scale: float
    cnn: str

    @property
    def height_width_channels(self) -> tuple[int, int, int]:
        """The frame's shape as the CNN reads it, [H, W, C]."""
        if self.channels_first:
            return self.shape[1], self.shape[2], self.shape[0]
        return self.shape


def image_input(space: gym.spaces.Box, encoder: str) -> ImageInput | None:
    """How ``space`` goes through a CNN, or None when it is flattened into the MLP.

    With ``encoder="mlp"`` every ``Box`` is flattened. Otherwise a rank-3 ``Box`` of uint8, of bool
    (MinAtar's grids; read as uint8 0/1, not rescaled), or of floats bounded to [0, 1], is an image
    (channels first when its first axis is shorter than its last, as ``FrameStackObservation``
    stacks frames: ALE's 4×84×84; else channels last: MinAtar's 10×10×n); ``"auto"`` picks the Nature CNN when height and width are both at least 36, else
    the small CNN. Raises :class:`UnsupportedSpaceError` for spaces that look like images but that
    no CNN here reads: rank-3 floats outside [0, 1], uint8 of rank 2 or of rank 4 and more, and
    frames too small for the chosen CNN. Bool boxes of other ranks are flattened.
    """
    if encoder == "mlp":
        return None
    rank, uint8 = len(space.shape), space.dtype == np.uint8
    binary = space.dtype == np.bool_  # of rank 3, MinAtar's grids: stored and fed as uint8 0/1
    unit = (np.issubdtype(space.dtype, np.floating) and bool(np.all(space.low >= 0.0))
            and bool(np.all(space.high <= 1.0)))
    hint = "or set TRPOConfig(encoder='mlp') to flatten it into the MLP"
    if rank == 3 and not (uint8 or binary or unit):
        raise UnsupportedSpaceError(
            f"observation space {space} has rank 3 like an image, but its {space.dtype} values are not bounded to "
            f"[0, 1]: the CNN reads uint8 frames (0-255), bool grids or float frames in [0, 1]; rescale the frames, "
            f"{hint}")
    if uint8 and rank == 2:
        raise UnsupportedSpaceError(
            f"observation space {space} holds uint8 frames without a channel axis: the CNN reads rank-3 frames "
            f"(H, W, C or C, H, W); add one (gymnasium.wrappers.ReshapeObservation(env, {space.shape + (1,)})), {hint}")
    if uint8 and rank > 3:
        raise UnsupportedSpaceError(
            f"observation space {space} has rank {rank}: the CNN reads rank-3 frames (H, W, C or C, H, W); merge the "
            f"leading axes into the channel axis (gymnasium.wrappers.ReshapeObservation), {hint}")
    if rank != 3:
        return None
    shape = (int(space.shape[0]), int(space.shape[1]), int(space.shape[2]))
    channels_first = shape[0] < shape[2]
    height, width = (shape[1], shape[2]) if channels_first else (shape[0], shape[1])
    cnn = encoder if encoder in CNNS else ("nature_cnn" if min(height, width) >= NATURE_MIN_SIZE else "small_cnn")
    needed = NATURE_MIN_SIZE if cnn == "nature_cnn" else SMALL_MIN_SIZE
    if min(height, width) < needed:
        raise UnsupportedSpaceError(
            f"observation space {space}: frames of {height}×{width} pixels are too small for the {cnn}, which needs "
            f"at least {needed}×{needed}" + ("; use encoder='small_cnn' (or 'auto')" if cnn == "nature_cnn" else ""))
    return ImageInput(shape, channels_first, "uint8" if uint8 or binary else "float32", 1.0 / 255.0 if uint8 else 1.0,
                      cnn)


class ObservationEncoder:
    """``Box`` vectors are flattened, ``Discrete`` values become one-hot vectors, image ``Box`` es
    are kept as frames, and a ``Dict`` is one such encoder per key (``encoder``: see :func:`image_input`).

    Attributes: ``shape`` (one observation's shape; None for a ``Dict``), ``dim`` (D, the flat
    feature size), ``images`` (frame name → :class:`ImageInput`; empty when there is no image),
    ``keys`` (a ``Dict`` 's keys, in order; None otherwise) and ``inputs`` (raw input name →
    (shape, dtype name) as :meth:`check` returns them and exports take them).
    """

    def __init__(self, space: gym.Space, encoder: str = "auto", name: str = INPUT_NAME):
        self.start = 0
        self.one_hot = False
        self.keys: tuple[str, ...] | None = None
        self.parts: dict[str, ObservationEncoder] = {}
        self.images: dict[str, ImageInput] = {}
        if isinstance(space, gym.spaces.Dict):
            self._init_dict(space, encoder)
            return
        if isinstance(space, gym.spaces.Box):
            self.shape: tuple[int, ...] | None = tuple(space.shape)
            image = image_input(space, encoder)
            if image is not None:
                self.images[name] = image
            self.dim = 0 if image is not None else int(np.prod(space.shape, dtype=np.int64))
            if np.prod(space.shape, dtype=np.int64) == 0:
                raise UnsupportedSpaceError(f"observation space {space!r} has no elements")
        elif isinstance(space, gym.spaces.Discrete):
            self.shape = ()
            self.dim = int(space.n)
            self.one_hot = True
            self.start = int(space.start)
        else:
            raise UnsupportedSpaceError(
                f"unsupported observation space {space!r}: trpo_tf supports {SUPPORTED_OBSERVATION_SPACES}")
        if self.dim == 0 and not self.images:
            raise UnsupportedSpaceError(f"observation space {space!r} has no elements")
        dtype = self.images[name].dtype if self.images else "float32"
        self.inputs: dict[str, tuple[tuple[int, ...], str]] = {name: (self.shape, dtype)}

    def _init_dict(self, space: gym.spaces.Dict, encoder: str) -> None:
        """One encoder per key of ``space``: ``Box`` and ``Discrete`` sub-spaces with valid names."""
        if not space.spaces:
            raise UnsupportedSpaceError(f"observation space {space!r} has no keys")
        for key, sub in space.spaces.items():
            if not isinstance(key, str) or not KEY_PATTERN.match(key):
                raise UnsupportedSpaceError(
                    f"observation space {space}: key {key!r} cannot name an input of an exported signature; Dict "
                    "keys must be a letter followed by letters, digits or underscores")
            if not isinstance(sub, (gym.spaces.Box, gym.spaces.Discrete)):
                raise UnsupportedSpaceError(
                    f"observation space {space}: key {key!r} holds {sub}; the sub-spaces of a Dict must be Box or "
                    "Discrete (not nested Dict or Tuple): flatten the nesting, e.g. with "
                    "gymnasium.wrappers.FlattenObservation on that part")
            self.parts[key] = ObservationEncoder(sub, encoder, name=key)
            self.images.update(self.parts[key].images)
        self.shape = None
        self.keys = tuple(self.parts)
        self.dim = sum(part.dim for part in self.parts.values())
        self.inputs = {key: part.inputs[key] for key, part in self.parts.items()}

    @property
    def flat_parts(self) -> list[tuple[str, ObservationEncoder]]:
        """The keys and encoders of a ``Dict`` 's flattened (non-image) sub-spaces, in order."""
        return [(key, part) for key, part in self.parts.items() if not part.images]

    def check(self, observations: Any) -> Any:
        """``observations`` as a batch [B, *obs_shape] (a dict of them for a ``Dict``), in the dtypes of
        :attr:`inputs`; a single observation gains B = 1.

        Raises ValueError naming the expected and received shapes (or keys) when they do not fit.
        """
        if self.keys is None:
            return self._check_array(observations, *self.inputs[next(iter(self.inputs))])
        if not isinstance(observations, Mapping) or set(observations) != set(self.keys):
            found = sorted(observations) if isinstance(observations, Mapping) else type(observations).__name__
            raise ValueError(f"observations must be a dict with the keys {list(self.keys)} of the Dict "
                             f"observation space, got {found}")
        checked = {key: part.check(observations[key]) for key, part in self.parts.items()}
        sizes = {key: len(value) for key, value in checked.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"the observations' keys hold batches of different sizes: {sizes}")
        return checked

    def _check_array(self, observations: Any, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        """One input as a batch [B, *shape] of ``dtype``; uint8 frames must be whole numbers in [0, 255]."""
        array = np.asarray(observations)
        if array.dtype.kind not in "biuf":
            raise ValueError(f"observations must be numbers, got an array of {array.dtype}")
        if array.shape == shape:
            array = array[None]
        if array.shape[1:] != shape:
            raise ValueError(f"observations of shape {array.shape} do not fit the observation space: "
                             f"expected [batch, {', '.join(map(str, shape))}]".replace(", ]", "]"))
        if dtype == "uint8" and array.dtype != np.uint8:
            if not np.all((array == np.round(array)) & (array >= 0) & (array <= 255)):
                raise ValueError("uint8 frames must be whole numbers in [0, 255]")
            return array.astype(np.uint8)
        array = array.astype(np.dtype(dtype), copy=False)
        if self.one_hot and not np.all((array == np.round(array)) & (array >= self.start)
                                       & (array < self.start + self.dim)):
            raise ValueError(f"Discrete observations must be whole numbers in [{self.start}, "
                             f"{self.start + self.dim}), got {array.tolist()}")
        return array

    def frames(self, observations: Any) -> dict[str, Any]:
        """The image inputs of ``observations`` (NumPy or TensorFlow), by name, as they come [B, *frame_shape]."""
        if self.keys is None:
            return {name: observations for name in self.images}
        return {key: observations[key] for key in self.images}

    def numpy(self, observations: Any) -> np.ndarray:
        """Raw observations [B, *obs_shape] (a dict for a ``Dict``) → flat features [B, D] in NumPy."""
        if self.keys is not None:
            pieces = [part.numpy(observations[key]) for key, part in self.flat_parts]
            return np.concatenate(pieces, axis=1) if pieces else np.zeros((_batch_size(observations), 0), np.float32)
        if self.images:
            return np.zeros((len(observations), 0), np.float32)
        if self.one_hot:
            return np.eye(self.dim, dtype=np.float32)[np.asarray(observations, np.int64) - self.start]
        return np.asarray(observations, dtype=np.float32).reshape(len(observations), self.dim)

    def tensorflow_feature_mask(self, entry_mask: Any) -> tf.Tensor:
        """float32 [B, *obs_shape] (1 where an observation's entry is usable, else 0; a dict for a ``Dict``)
        → a mask that multiplies features [B, D]: per feature for Box, per observation for Discrete."""
        import tensorflow as tf
        if self.keys is not None:
            return tf.concat([part.tensorflow_feature_mask(entry_mask[key]) for key, part in self.flat_parts]
                             or [tf.zeros([_batch_size(entry_mask, tf.shape), 0])], axis=1)
        if self.images:
            return tf.zeros([tf.shape(entry_mask)[0], 0])
        if self.one_hot:
            return entry_mask[:, None]
        return tf.reshape(entry_mask, [-1, self.dim])

    def tensorflow(self, observations: Any) -> tf.Tensor:
        """Raw observations [B, *obs_shape] (a dict for a ``Dict``) → flat features [B, D] in the TensorFlow graph."""
        import tensorflow as tf
        if self.keys is not None:
            pieces = [part.tensorflow(observations[key]) for key, part in self.flat_parts]
            return tf.concat(pieces, axis=1) if pieces else tf.zeros([_batch_size(observations, tf.shape), 0])
        if self.images:
            return tf.zeros([tf.shape(observations)[0], 0])
        if self.one_hot:
            return tf.one_hot(tf.cast(observations, tf.int32) - self.start, self.dim, dtype=tf.float32)
        return tf.reshape(tf.cast(observations, tf.float32), [-1, self.dim])


def _batch_size(observations: Mapping[str, Any], shape: Any = np.shape) -> Any:
    """B of a dict of batches [B, ...] (``shape``: ``np.shape`` or ``tf.shape``)."""
    return shape(next(iter(observations.values())))[0]
