"""Image observations → frames a CNN reads: rank-3 uint8 frames, bool grids, or float frames in [0, 1].

Which ``Box`` is an image is decided by :func:`image_input`; an image adds no flat features
(D = 0): its frames go as they come, [B, *shape], to the CNN of :mod:`trpo_tf.policies.cnn`,
which scales them and moves channels last inside the graph.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from trpo_tf.errors import UnsupportedSpaceError
from trpo_tf.policies.encoders.base import LeafEncoder

if TYPE_CHECKING:
    import tensorflow as tf

CNNS = ("nature_cnn", "small_cnn")
NATURE_MIN_SIZE = 36  # the Nature CNN's 8×8/4, 4×4/2 and 3×3/1 convolutions need 36×36 pixels
SMALL_MIN_SIZE = 3  # the small CNN's one 3×3 convolution


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


class ImageEncoder(LeafEncoder):
    """A ``Box`` that :func:`image_input` calls an image → its frames, for a CNN; no flat features.

    ``space`` is the image Box, ``name`` the raw input's name (and the frame's), ``image`` how the CNN
    reads it (from :func:`image_input`).
    """

    spaces = (gym.spaces.Box,)
    priority = 1  # asked before the flat encoder, which reads every other Box

    def __init__(self, space: gym.spaces.Box, name: str, image: ImageInput):
        super().__init__(space, name, image.dtype, 0)
        self.images = {name: image}

    @classmethod
    def reads(cls, space: gym.Space, encoder: str) -> bool:
        """Whether ``space`` is a Box :func:`image_input` reads as an image under ``encoder``
        (``TRPOConfig.encoder``); :class:`UnsupportedSpaceError` for one that looks like an image no CNN reads."""
        return isinstance(space, gym.spaces.Box) and image_input(space, encoder) is not None

    @classmethod
    def for_space(cls, space: gym.Space, encoder: str, name: str) -> ImageEncoder:
        """The image encoder of ``space`` (a Box :meth:`reads` accepted under ``encoder``), its raw input
        and its frame called ``name``."""
        assert isinstance(space, gym.spaces.Box)
        image = image_input(space, encoder)
        assert image is not None
        return cls(space, name, image)

    def check_values(self, array: np.ndarray) -> np.ndarray:
        """``array`` [B, *shape] in the frames' dtype: uint8 frames must be whole numbers in [0, 255]
        (ValueError otherwise); float frames are float32."""
        if self.dtype == "uint8" and array.dtype != np.uint8:
            if not np.all((array == np.round(array)) & (array >= 0) & (array <= 255)):
                raise ValueError("uint8 frames must be whole numbers in [0, 255]")
            return array.astype(np.uint8)
        return super().check_values(array)

    def usable_range(self) -> tuple[float, float]:
        """(0, 1): where the checks are dropped, float frames are clipped to the unit interval."""
        return 0.0, 1.0

    def tensorflow_checked(self, observations: Any) -> tuple[Any, Any]:
        """``observations`` [B, *shape] → (usable frames, float32 mask). uint8 frames are always usable:
        only their shape is checked (the mask is all ones); float frames are checked as any leaf input."""
        if self.dtype != "uint8":
            return super().tensorflow_checked(observations)
        import tensorflow as tf
        observations = self.shape_checked(observations)
        return observations, tf.ones_like(observations, tf.float32)

    def numpy(self, observations: Any) -> np.ndarray:
        """No flat features: zeros [B, 0] for ``observations`` [B, *shape]."""
        return np.zeros((len(observations), 0), np.float32)

    def tensorflow(self, observations: Any) -> tf.Tensor:
        """No flat features: zeros [B, 0] for ``observations`` [B, *shape]."""
        import tensorflow as tf
        return tf.zeros([tf.shape(observations)[0], 0])

    def tensorflow_feature_mask(self, entry_mask: Any) -> tf.Tensor:
        """An empty mask [B, 0] for ``entry_mask`` [B, *shape] (no flat features)."""
        import tensorflow as tf
        return tf.zeros([tf.shape(entry_mask)[0], 0])

    def frames(self, observations: Any) -> dict[str, Any]:
        """``{name: observations}``: the frames as they come, [B, *shape]."""
        return {self.name: observations}
