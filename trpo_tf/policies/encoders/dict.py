"""Dict observations → one encoder per key: flat features concatenated in key order, frames by key.

Each key names one raw input of the exported signatures, so keys must be valid TensorFlow
input names; sub-spaces must be ones a leaf encoder reads (not nested Dicts or Tuples).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import gymnasium as gym
import numpy as np

from trpo_tf.errors import UnsupportedSpaceError
from trpo_tf.policies.encoders.base import ENCODERS, KEY_PATTERN, ObservationEncoder, make_encoder

if TYPE_CHECKING:
    import tensorflow as tf


class DictEncoder(ObservationEncoder):
    """``Dict`` → the encoders of its keys (``parts``), composed; observations are dicts of batches by key."""

    spaces = (gym.spaces.Dict,)

    keys: tuple[str, ...]

    def __init__(self, parts: dict[str, ObservationEncoder]):
        self.parts = parts
        self.keys = tuple(parts)
        self.shape = None
        self.dim = sum(part.dim for part in parts.values())
        self.inputs = {key: part.inputs[key] for key, part in parts.items()}
        self.images = {name: image for part in parts.values() for name, image in part.images.items()}

    @classmethod
    def for_space(cls, space: gym.Space, encoder: str, name: str) -> DictEncoder:
        """The encoders of the keys of the ``Dict`` ``space``, each made by :func:`make_encoder` with
        ``encoder`` and named by its key (``name`` is not used: the keys name the inputs).

        Raises :class:`UnsupportedSpaceError` for a Dict without keys, a key that cannot name a signature
        input, or a sub-space no leaf encoder reads (nested Dict or Tuple included).
        """
        assert isinstance(space, gym.spaces.Dict)
        if not space.spaces:
            raise UnsupportedSpaceError(f"observation space {space!r} has no keys")
        parts = {}
        for key, sub in space.spaces.items():
            if not isinstance(key, str) or not KEY_PATTERN.match(key):
                raise UnsupportedSpaceError(
                    f"observation space {space}: key {key!r} cannot name an input of an exported signature; Dict "
                    "keys must be a letter followed by letters, digits or underscores")
            if isinstance(sub, (gym.spaces.Dict, gym.spaces.Tuple)) or not any(
                    leaf.reads(sub, encoder) for leaf in _leaf_encoders()):
                raise UnsupportedSpaceError(
                    f"observation space {space}: key {key!r} holds {sub}; the sub-spaces of a Dict must be Box, "
                    "Discrete or MultiDiscrete (not nested Dict or Tuple): flatten the nesting, e.g. with "
                    "gymnasium.wrappers.FlattenObservation on that part")
            parts[key] = make_encoder(sub, encoder, name=key)
        return cls(parts)

    def check(self, observations: Any) -> dict[str, np.ndarray]:
        """``observations``, a dict by key, each part checked by its key's encoder: {key: [B, *shape_key]}.
        ValueError when the keys differ from the space's, a part does not fit, or the parts' batch sizes differ."""
        if not isinstance(observations, Mapping) or set(observations) != set(self.keys):
            found = sorted(observations) if isinstance(observations, Mapping) else type(observations).__name__
            raise ValueError(f"observations must be a dict with the keys {list(self.keys)} of the Dict "
                             f"observation space, got {found}")
        checked = {key: part.check(observations[key]) for key, part in self.parts.items()}
        sizes = {key: len(value) for key, value in checked.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"the observations' keys hold batches of different sizes: {sizes}")
        return checked

    def numpy(self, observations: Any) -> np.ndarray:
        """``observations`` {key: [B, *shape_key]} → the keys' features concatenated in key order, [B, D]."""
        return np.concatenate([part.numpy(observations[key]) for key, part in self.parts.items()], axis=1)

    def tensorflow(self, observations: Any) -> tf.Tensor:
        """``observations`` {key: [B, *shape_key]} → the keys' features concatenated in key order, [B, D]."""
        import tensorflow as tf
        return tf.concat([part.tensorflow(observations[key]) for key, part in self.parts.items()], axis=1)

    def tensorflow_feature_mask(self, entry_mask: Any) -> tf.Tensor:
        """``entry_mask`` {key: [B, *shape_key]} → each key's feature mask, concatenated in key order: [B, D]."""
        import tensorflow as tf
        return tf.concat([part.tensorflow_feature_mask(entry_mask[key]) for key, part in self.parts.items()], axis=1)

    def tensorflow_checked(self, observations: Any) -> tuple[Any, Any]:
        """Each key's :meth:`~trpo_tf.policies.encoders.base.LeafEncoder.tensorflow_checked` on
        ``observations`` {key: tensor}: (usable observations by key, masks by key)."""
        pairs = {key: part.tensorflow_checked(observations[key]) for key, part in self.parts.items()}
        return {key: pair[0] for key, pair in pairs.items()}, {key: pair[1] for key, pair in pairs.items()}

    def frames(self, observations: Any) -> dict[str, Any]:
        """The frames of every key of ``observations`` by name (a key with an image names its frame)."""
        return {name: frame for key, part in self.parts.items() for name, frame in part.frames(observations[key]).items()}

    def tensor_spec(self) -> Any:
        """The TensorSpecs of a batch of raw observations, by key."""
        return {key: part.tensor_spec() for key, part in self.parts.items()}


def _leaf_encoders() -> list[type[ObservationEncoder]]:
    """The registered encoders that read one array (all but this one)."""
    return [encoder for encoder in ENCODERS if encoder is not DictEncoder]
