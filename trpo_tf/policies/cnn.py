"""The CNNs that read image observations, and the trunk that joins them with the flat features.

Shapes: B is the batch size, D the flat feature size, F the trunk's output size.

A model with a trunk (the policy's, and the value function's own) takes *model inputs*
``(features [B, D], frames {name: [B, *frame_shape]})``: the normalized flat features and the
raw frames (see :mod:`trpo_tf.policies.encoders`). The trunk casts each frame to float32 inside
the graph, scales it (×1/255 for uint8), moves channels last, runs its CNN and concatenates
the CNN outputs after the features: [B, F].
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

from trpo_tf.policies.encoders import ImageInput, ObservationEncoder

DEFAULT_FEATURES = {"nature_cnn": 512, "small_cnn": 128}  # the last dense layer, as in DQN and MinAtar
# (filters, kernel, stride) of each convolution: Mnih et al. (2015); Young & Tian (2019) for MinAtar.
CONVOLUTIONS = {"nature_cnn": ((32, 8, 4), (64, 4, 2), (64, 3, 1)), "small_cnn": ((16, 3, 1),)}


def image_network(image: ImageInput, features: int, seed: int, name: str) -> keras.Sequential:
    """Frames [B, H, W, C] float32 (scaled) → [B, ``features``] through ``image.cnn``: ReLU
    convolutions without padding, flattened, then a dense ReLU layer (orthogonal init, gain √2).

    ``image`` is the frame's :class:`~trpo_tf.policies.encoders.ImageInput`; ``features`` the width of the
    last dense layer (0: the CNN's default, 512 for ``nature_cnn``, 128 for ``small_cnn``); ``seed`` seeds
    the initializers (convolution i uses ``seed + i``, the dense layer ``seed + 10``); ``name`` names the
    built ``keras.Sequential``.
    """
    width = features or DEFAULT_FEATURES[image.cnn]
    layers: list[keras.layers.Layer] = [
        keras.layers.Conv2D(filters, kernel, strides=stride, activation="relu", name=f"conv_{i}",
                            kernel_initializer=keras.initializers.Orthogonal(math.sqrt(2), seed=seed + i))
        for i, (filters, kernel, stride) in enumerate(CONVOLUTIONS[image.cnn])]
    layers += [keras.layers.Flatten(name="flatten"),
               keras.layers.Dense(width, activation="relu", name="dense",
                                  kernel_initializer=keras.initializers.Orthogonal(math.sqrt(2), seed=seed + 10))]
    model = keras.Sequential(layers, name=name)
    model.build((None,) + image.height_width_channels)
    return model


class Trunk(keras.layers.Layer):
    """Model inputs ``(features [B, D], frames)`` → [B, D + Σ cnn widths]: one CNN per frame name.

    ``encoder`` gives the flat feature size D and the frames (``encoder.images``, one CNN each, in sorted
    name order); ``features`` is the width of each CNN's last dense layer (0: the CNN's default); ``seed``
    seeds the initializers (the i-th CNN uses ``seed + 100 * i``). ``output_dim`` is the output width.
    """

    def __init__(self, encoder: ObservationEncoder, features: int, seed: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.names = sorted(encoder.images)
        self.images = [encoder.images[name] for name in self.names]
        for i, (name, image) in enumerate(zip(self.names, self.images)):
            # One attribute each: TensorFlow checkpoints do not follow Keras' wrapped lists.
            setattr(self, f"cnn_{i}", image_network(image, features, seed + 100 * i, name=f"cnn_{name}"))
        self.output_dim = encoder.dim + sum(int(cnn.output_shape[-1]) for cnn in self.cnns)
        self.built = True

    @property
    def cnns(self) -> list[keras.Sequential]:
        """The CNN of each frame name, in the order of :attr:`names`."""
        return [getattr(self, f"cnn_{i}") for i in range(len(self.names))]

    def call(self, inputs: Any) -> Any:
        features, frames = inputs
        pieces = [features] + [cnn(scaled_frames(frames[name], image))
                               for name, image, cnn in zip(self.names, self.images, self.cnns)]
        return tf.concat(pieces, axis=1)


def scaled_frames(frames: tf.Tensor, image: ImageInput) -> tf.Tensor:
    """Raw frames [B, *image.shape] → float32 [B, H, W, C] in [0, 1]."""
    scaled = tf.cast(frames, tf.float32) * image.scale
    return tf.transpose(scaled, [0, 2, 3, 1]) if image.channels_first else scaled


class WithTrunk(keras.Model):
    """A model of features [B, F] (``head``) behind a :class:`Trunk`: model inputs → ``head`` 's outputs.

    ``trunk`` maps model inputs to [B, F]; ``head`` maps [B, F] to the model's outputs.
    """

    def __init__(self, trunk: Trunk, head: keras.Model, **kwargs: Any):
        super().__init__(**kwargs)
        self.trunk = trunk
        self.head = head

    def call(self, inputs: Any) -> Any:
        return self.head(self.trunk(inputs))


def model_input_spec(encoder: ObservationEncoder) -> Any:
    """The TensorSpec of a batch of model inputs for ``encoder``: features [None, D] float32 alone
    without frames, else ``(features, {name: [None, *frame_shape] in the frame's dtype})``."""
    features = tf.TensorSpec([None, encoder.dim], tf.float32)
    if not encoder.images:
        return features
    return features, {name: tf.TensorSpec((None,) + image.shape, tf.as_dtype(image.dtype))
                      for name, image in encoder.images.items()}
