"""The policy as one object; it hands out what acts: a picklable NumPy snapshot (:mod:`trpo_tf.policies.acting`)
when its network is a chain of Dense layers, else a compiled TensorFlow actor (:mod:`trpo_tf.policies.tf_acting`).

Shapes: B is the batch size, D the flat feature size, A the action shape, M the length of an action mask.

*Model inputs* are what the compiled graphs (the update, the value fit) take: normalized
features [B, D] for a policy without a CNN; ``(normalized features [B, D], frames {name:
[B, *frame_shape]})`` for one with a CNN (:mod:`trpo_tf.policies.cnn`), whose trunk then runs
inside those graphs so that the trust-region step moves its weights too.

A recurrent policy (:attr:`Policy.recurrent`, :mod:`trpo_tf.policies.recurrent`) puts a cell between
the features (or the CNN trunk's output) and the network. Its compiled graphs take segments: model
inputs [T·N, ...] time-major with ``episode_starts`` [T, N] and each segment's first ``state`` [N, S]
(a dict, :func:`~trpo_tf.policies.recurrent.sequence_inputs`); acting takes and returns the state.

A policy made with ``action_masks=True`` (:attr:`Policy.masked`) also takes action masks, bool
[B, M] (True where allowed), wherever it builds its distribution: the optional ``masks`` argument
of the methods below; without one every action is allowed.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from trpo_tf.normalization import ObservationNormalizer
from trpo_tf.errors import NetworkError
from trpo_tf.policies import recurrent as rnn
from trpo_tf.policies.acting import NUMPY_ACTIVATIONS, PolicySnapshot
from trpo_tf.policies.cnn import Trunk, WithTrunk, model_input_spec
from trpo_tf.policies.encoders import ObservationEncoder, make_encoder
from trpo_tf.policies.head import ActionHead, action_head
from trpo_tf.policies.networks import NetworkSpec, acts_in_numpy, dense_arrays, policy_network, value_network
from trpo_tf.policies.tf_acting import CompiledActor


class Policy(keras.Model):
    """Raw observations [B, *obs_shape] → action distribution.

    ``encoder`` (observations → features [B, D]), ``normalizer`` (running statistics of the
    features, updated once per batch by :meth:`observe`), ``network`` (normalized features →
    head outputs [B, head.param_size]) and ``head`` (outputs and its own parameters → TFP
    distribution and actions). With image observations a ``trunk`` (:class:`~trpo_tf.policies.cnn.Trunk`)
    runs the CNNs between the model inputs and the network. The value function reads the same
    model inputs (:meth:`features`). Checkpoints and exports take the whole object.

    ``acts_in_numpy``: whether the policy has a NumPy copy (no trunk, and a network that is a
    chain of Dense layers with activations :mod:`~trpo_tf.policies.acting` knows); :meth:`actor`
    hands out what acts. ``masked``: whether it takes action masks (see the module docstring).
    ``cell``: a Keras LSTM or GRU cell of kind ``cell_kind`` between the features and the network (a
    recurrent policy; ``truncate``: backpropagation through time in windows of that many steps, None: whole
    segments), or None.
    """

    def __init__(self, encoder: ObservationEncoder, normalizer: ObservationNormalizer, network: keras.Model,
                 head: ActionHead, trunk: Trunk | None = None, cell: keras.layers.Layer | None = None,
                 cell_kind: str | None = None, truncate: int | None = None, **kwargs: Any):
        super().__init__(name=kwargs.pop("name", "policy"), **kwargs)
        self.encoder = encoder
        self.normalizer = normalizer
        self.network = network
        self.head = head
        self.trunk = trunk
        self.cell = cell
        self.cell_kind = cell_kind
        self.truncate = truncate
        self._compiled_outputs: Any = None
        self._compiled_step: Any = None
        self.acts_in_numpy = trunk is None and acts_in_numpy(network, cell.units if cell is not None else encoder.dim)

    @property
    def recurrent(self) -> bool:
        """Whether the policy carries a recurrent state (has a cell)."""
        return self.cell is not None

    @property
    def state_size(self) -> int:
        """S, the width of one environment's recurrent state (0 without a cell)."""
        return 0 if self.cell is None or self.cell_kind is None else rnn.state_size(self.cell_kind, self.cell.units)

    def state_spec(self) -> tf.TensorSpec:
        """The TensorSpec of a batch of recurrent states, float32 [None, S], named ``state``."""
        return tf.TensorSpec([None, self.state_size], tf.float32, name="state")

    def encode(self, inputs: Any) -> tf.Tensor:
        """Model inputs [B, ...] → what the network (or the cell) reads [B, F]: through the trunk, if any."""
        return inputs if self.trunk is None else self.trunk(inputs)

    def trainable_parameters(self) -> list[tf.Variable]:
        """θ, the variables the trust-region step moves, in the order of the flat vector [P].

        The head's own parameters (the Gaussian's log-std) come first, then the network's, then
        the trunk's CNNs. Keras 3 wraps its variables; autodiff wants the ``tf.Variable`` behind each.
        """
        trunk = list(self.trunk.trainable_variables) if self.trunk is not None else []
        cell = list(self.cell.trainable_variables) if self.cell is not None else []
        return [v.value for v in list(self.head.trainable_variables) + list(self.network.trainable_variables)
                + trunk + cell]

    def model_input_spec(self) -> Any:
        """The TensorSpec of a batch of model inputs (see the module docstring): for a recurrent policy,
        segments (:func:`~trpo_tf.policies.recurrent.sequence_inputs`)."""
        spec = model_input_spec(self.encoder)
        if not self.recurrent:
            return spec
        return rnn.sequence_inputs(spec, tf.TensorSpec([None, None], tf.bool), tf.TensorSpec([None, self.state_size]))

    @property
    def masked(self) -> bool:
        """Whether the policy takes action masks (it was trained on an environment that gives them)."""
        return self.head.masked

    def mask_spec(self) -> tf.TensorSpec | None:
        """The TensorSpec of a batch of action masks (bool [None, M], named ``action_mask``); None unless masked."""
        return self.head.mask_spec()

    def observation_spec(self) -> Any:
        """The TensorSpec of a batch of raw observations: [None, *obs_shape] (a dict of them by
        key for a ``Dict``), float32, or the frames' own dtype (uint8) for images."""
        return self.encoder.tensor_spec()

    # ---------------------------------------------------------------- TensorFlow

    def features(self, observations: Any) -> Any:
        """Raw observations [B, *obs_shape] → model inputs: normalized features [B, D], with the frames
        when the policy has a CNN."""
        return self.model_inputs(self.normalizer(self.encoder.tensorflow(observations)), observations)

    def model_inputs(self, normalized: Any, observations: Any) -> Any:
        """Model inputs from normalized features [B, D] and the raw ``observations`` that hold the frames."""
        return normalized if self.trunk is None else (normalized, self.encoder.frames(observations))

    def distribution_parameters(self, features: Any, masks: tf.Tensor | None = None) -> list[tf.Tensor]:
        """η(θ) at model inputs ``features`` (see :meth:`ActionHead.distribution_parameters`), masked by ``masks``."""
        return self.head.distribution_parameters(self.network_outputs(features), masks)

    def network_outputs(self, features: Any) -> tf.Tensor:
        """Model inputs ``features`` (normalized features [B, D], with the frames when the policy has a CNN;
        segments for a recurrent policy) → the network's outputs [B, head.param_size] (through the trunk and
        the cell, if any)."""
        if self.cell is None or self.cell_kind is None:
            return self.network(self.encode(features))
        return rnn.sequence_outputs(self.cell_kind, self.cell, self.network, self.encode, features, self.truncate)[0]

    def step_outputs(self, inputs: Any, state: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """A recurrent policy's one step: model ``inputs`` [B, ...] and ``state`` [B, S] → (network outputs
        [B, head.param_size], new states [B, S])."""
        assert self.cell is not None and self.cell_kind is not None, "step_outputs needs a recurrent policy"
        return rnn.step_outputs(self.cell_kind, self.cell, self.network, self.encode, inputs, state)

    def step_parameters(self, observations: Any, state: tf.Tensor) -> tuple[list[tf.Tensor], tf.Tensor]:
        """A recurrent policy's one step from raw ``observations`` [B, *obs_shape] and ``state`` [B, S]: (the
        distribution's parameters η, new states [B, S])."""
        outputs, state = self.step_outputs(self.features(observations), state)
        return self.head.distribution_parameters(outputs), state

    def distribution(self, features: Any, masks: tf.Tensor | None = None) -> Any:
        """π_θ(· | s) at model inputs ``features``, as a TFP distribution (over the actions ``masks`` allows)."""
        return self.head.distribution(self.distribution_parameters(features, masks))

    def frozen_distribution(self, features: Any, masks: tf.Tensor | None = None) -> Any:
        """The current distribution at model inputs ``features`` (masked by ``masks`` [B, M] when given) with
        its parameters held constant (π_old)."""
        return self.head.distribution([tf.stop_gradient(p) for p in self.distribution_parameters(features, masks)])

    def deterministic_action(self, observations: tf.Tensor, masks: tf.Tensor | None = None) -> tf.Tensor:
        """Raw observations [B, *obs_shape] → most probable actions [B, *A] in environment units (among those
        ``masks`` [B, M] allows when given)."""
        return self.head.deterministic(self.distribution_parameters(self.features(observations), masks))

    def sample_action(self, observations: tf.Tensor, masks: tf.Tensor | None = None) -> tf.Tensor:
        """Raw observations [B, *obs_shape] → random actions [B, *A] in environment units (among those
        ``masks`` [B, M] allows when given)."""
        return self.head.sample(self.distribution_parameters(self.features(observations), masks))

    def named_parameters(self, observations: tf.Tensor, masks: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        """Raw observations [B, *obs_shape] → the distribution's parameters by name (masked by ``masks``
        [B, M] when given)."""
        return self.head.named_parameters(self.distribution_parameters(self.features(observations), masks))

    def call(self, observations: tf.Tensor) -> tf.Tensor:
        return self.deterministic_action(observations)

    # ---------------------------------------------------------------- NumPy

    def observe(self, encoded: np.ndarray) -> None:
        """Merge encoded observations [B, D] into the normalizer's running statistics."""
        self.normalizer.update(encoded)

    def actor(self) -> PolicySnapshot | CompiledActor:
        """What acts now, in this process: :meth:`snapshot` when the policy acts in NumPy, else a
        :class:`~trpo_tf.policies.tf_acting.CompiledActor` (one compiled call per vectorized step)."""
        return self.snapshot() if self.acts_in_numpy else CompiledActor(self)

    def snapshot(self) -> "PolicySnapshot":
        """A frozen NumPy copy of the current policy, picklable, for acting in any process.

        NetworkError when the policy has no NumPy copy (see :attr:`acts_in_numpy`).
        """
        layers = dense_arrays(self.network) if self.acts_in_numpy else None
        if layers is None:
            what = "a CNN" if self.trunk is not None else f"the policy network ({self.network.name})"
            raise NetworkError(f"{what} has no NumPy copy: only a chain of Dense layers with activations "
                               f"{', '.join(NUMPY_ACTIVATIONS)} acts in NumPy; it acts through TensorFlow in this "
                               "process (Policy.actor())")
        return PolicySnapshot(encoder=self.encoder, normalizer=self.normalizer.numpy_normalize(),
                              layers=tuple(layers), distribution=self.head.action_distribution,
                              free_parameters=self.head.free_arrays(),
                              cell=None if self.cell is None or self.cell_kind is None
                              else rnn.numpy_cell(self.cell_kind, self.cell))

    def compiled_step(self) -> Any:
        """A recurrent policy's :meth:`step_outputs` as a ``tf.function`` of (model inputs, states), traced once."""
        if self._compiled_step is None:
            self._compiled_step = tf.function(self.step_outputs, input_signature=[
                model_input_spec(self.encoder), self.state_spec()], autograph=False)
        return self._compiled_step

    def compiled_outputs(self) -> Any:
        """:meth:`network_outputs` as a ``tf.function`` of model inputs, traced once per policy."""
        if self._compiled_outputs is None:
            self._compiled_outputs = tf.function(self.network_outputs,
                                                 input_signature=[self.model_input_spec()], jit_compile=True)
        return self._compiled_outputs


def make_policy(observation_space: gym.Space, action_space: gym.Space, hidden: tuple[int, ...], activation: str,
                init_log_std: float, normalize_observations: bool, seed: int, encoder: str = "auto",
                cnn_features: int = 0, network: NetworkSpec | None = None,
                action_distribution: str = "gaussian", action_masks: bool = False, recurrent: str | None = None,
                recurrent_units: int = 64, truncate: int | None = None) -> Policy:
    """The policy for these spaces: head chosen by the action space (and, for a Box, by
    ``action_distribution``: see :func:`~trpo_tf.policies.distributions.make_distribution`); frames go through CNNs
    first (``encoder``, ``cnn_features``: see :class:`~trpo_tf.config.TRPOConfig`), then an MLP of
    ``hidden`` units or the user's ``network`` (see :mod:`trpo_tf.policies.networks`) with an output
    layer added.

    ``observation_space`` chooses the encoder, ``action_space`` the head; ``activation`` is the MLP's
    hidden activation; ``init_log_std`` the initial log-std of a distribution that has one;
    ``normalize_observations`` turns the running normalization of the features on; ``seed`` seeds the
    initializers (the trunk uses ``seed + 1000``); ``action_masks``: the policy takes action masks
    (Discrete and MultiDiscrete actions only); ``recurrent`` ("lstm", "gru" or None): a cell of ``recurrent_units``
    between the features and the MLP (seeded from ``seed + 2000``), ``truncate`` its BPTT window. Raises :class:`~trpo_tf.errors.UnsupportedSpaceError`
    for a space no encoder or distribution handles, :class:`~trpo_tf.errors.ConfigError` for an unknown
    ``action_distribution`` or ``encoder``, and :class:`~trpo_tf.errors.NetworkError` for an unusable
    ``network``.
    """
    observation_encoder = make_encoder(observation_space, encoder)
    head = action_head(action_space, init_log_std, action_distribution, masked=action_masks)
    normalizer = ObservationNormalizer(observation_encoder.dim, enabled=normalize_observations)
    trunk = make_trunk(observation_encoder, cnn_features, seed + 1000)
    features = trunk.output_dim if trunk else observation_encoder.dim
    cell = None if recurrent is None else rnn.keras_cell(recurrent, recurrent_units, features, seed + 2000, "policy_cell")
    network_inputs = features if cell is None else recurrent_units
    return Policy(observation_encoder, normalizer,
                  policy_network(network_inputs, head.param_size, hidden, activation, seed, network), head, trunk,
                  cell=cell, cell_kind=recurrent, truncate=truncate)


def make_trunk(encoder: ObservationEncoder, cnn_features: int, seed: int) -> Trunk | None:
    """The CNN trunk for ``encoder`` 's frames, or None when it has none.

    ``cnn_features`` is the width of each CNN's last dense layer (0: the CNN's default); ``seed`` seeds
    its initializers.
    """
    return Trunk(encoder, cnn_features, seed, name="trunk") if encoder.images else None


def make_value(policy: Policy, hidden: tuple[int, ...], activation: str, cnn_features: int, seed: int,
               network: NetworkSpec | None = None) -> keras.Model:
    """The value function of ``policy`` 's model inputs: an MLP of ``hidden`` units with ``activation`` or
    the user's ``network``, behind its own CNN trunk when the policy has one (a shared trunk would let the
    value loss move the policy). ``cnn_features`` is the width of that trunk's CNNs' last layer (0: the
    default), ``seed`` seeds the initializers (the trunk uses ``seed + 1000``). Model inputs → values [B, 1].
    A recurrent policy gets a :class:`RecurrentValue` with its own cell, of the policy's kind and width."""
    trunk = make_trunk(policy.encoder, cnn_features, seed + 1000)
    if policy.recurrent:
        assert policy.cell is not None and policy.cell_kind is not None
        units = policy.cell.units
        features = trunk.output_dim if trunk else policy.encoder.dim
        return RecurrentValue(rnn.keras_cell(policy.cell_kind, units, features, seed + 2000, "value_cell"),
                              policy.cell_kind, value_network(units, hidden, activation, seed=seed, custom=network),
                              trunk, policy.truncate, name="value")
    if trunk is None:
        return value_network(policy.encoder.dim, hidden, activation, seed=seed, custom=network)
    return WithTrunk(trunk, value_network(trunk.output_dim, hidden, activation, seed=seed, custom=network),
                     name="value")


class RecurrentValue(keras.Model):
    """The value function of a recurrent policy: model inputs → ``trunk`` (if any) → its own ``cell`` (of
    ``kind``) → ``network`` → values; segments in, values [T·N, 1] out (:meth:`call`, :meth:`sequence`),
    or one step from given states (:meth:`step`). ``truncate``: the BPTT window (None: whole segments)."""

    def __init__(self, cell: keras.layers.Layer, kind: str, network: keras.Model, trunk: Trunk | None = None,
                 truncate: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.cell = cell
        self.cell_kind = kind
        self.network = network
        self.trunk = trunk
        self.truncate = truncate

    @property
    def state_size(self) -> int:
        """S, the width of one environment's value state."""
        return rnn.state_size(self.cell_kind, self.cell.units)

    def encode(self, inputs: Any) -> tf.Tensor:
        """Model inputs [B, ...] → what the cell reads [B, F] (through the trunk, if any)."""
        return inputs if self.trunk is None else self.trunk(inputs)

    def sequence(self, features: dict[str, Any]) -> tuple[tf.Tensor, tf.Tensor]:
        """Segments ``features`` (:func:`~trpo_tf.policies.recurrent.sequence_inputs`) → (values [T·N, 1],
        states after each step [T, N, S])."""
        return rnn.sequence_outputs(self.cell_kind, self.cell, self.network, self.encode, features, self.truncate)

    def step(self, inputs: Any, state: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Model ``inputs`` [B, ...] read from ``state`` [B, S] → (values [B, 1], new states [B, S])."""
        return rnn.step_outputs(self.cell_kind, self.cell, self.network, self.encode, inputs, state)

    def call(self, features: dict[str, Any]) -> tf.Tensor:
        return self.sequence(features)[0]
