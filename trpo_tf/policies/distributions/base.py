"""What every action distribution is: the base class, its registry, and the KL between two of them.

An action distribution is one class in one module of this package, holding both of its sides:

- its **NumPy side** (:meth:`ActionDistribution.act`, :meth:`ActionDistribution.to_env`): how a
  process without TensorFlow draws actions from the network's outputs during rollouts;
- its **TensorFlow side** (:meth:`ActionDistribution.parameters` and the methods that take those
  parameters): the TensorFlow Probability distribution whose log-probabilities, entropy and KL
  the trust-region step differentiates, and the actions the exported signatures return.

TensorFlow and TensorFlow Probability are imported inside the TensorFlow side's methods only,
so an acting snapshot that holds a distribution unpickles with NumPy alone (sampling workers,
Ray actors). A distribution object holds plain data (sizes, bounds as NumPy arrays); the
trainable variables some need (the Gaussian's state-independent log-std, its *free parameters*)
are owned by the policy's Keras :class:`~trpo_tf.policies.head.ActionHead` and handed to both
sides: as tensors to the TensorFlow side, as arrays to the NumPy side.

A subclass registers itself under its ``name`` in :data:`DISTRIBUTIONS` when its module is
imported; the package imports every module in it, so a new distribution is one new module.

A distribution that can honour **action masks** (the categorical ones) sets ``mask_components``
(the number of choices of each component a mask covers; their sum M is ``mask_size``, the length
of one state's mask) and maps network outputs to masked outputs on both sides
(:meth:`ActionDistribution.mask_numpy`, :meth:`ActionDistribution.mask_tensorflow`): everything
downstream (sampling, log-probabilities, entropy, the KL, the deterministic action) then reads
the masked outputs and needs no mask of its own.

Shapes: B is the batch size, P the network outputs a distribution reads (``param_size``),
A the action shape of the space, M the length of an action mask (``mask_size``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

import gymnasium as gym
import numpy as np

from trpo_tf.errors import ConfigError, UnsupportedSpaceError

if TYPE_CHECKING:
    import tensorflow as tf

Arrays = Mapping[str, np.ndarray]
"""Free parameters as NumPy arrays, by name (the Gaussian's ``{"log_std": [P]}``)."""

MASK_NAME = "action_mask"
"""The name of the action mask input of exported signatures."""

DISTRIBUTIONS: dict[str, type[ActionDistribution]] = {}
"""Every registered action distribution, by its ``name``, in the order the modules registered them."""


class ActionDistribution:
    """One action distribution for one action space: its NumPy side and its TensorFlow side.

    Class attributes a subclass sets: ``name`` (its key in :data:`DISTRIBUTIONS`), ``spaces``
    (the gymnasium space types it models), ``configurable`` (True: chosen for those spaces by
    ``TRPOConfig.action_distribution``; False: the one distribution for its spaces, chosen by the
    space alone), and where they differ from the defaults ``sample_conversion_problem`` and
    ``xla_dynamic_batch``. Instance attributes the constructor sets: ``param_size`` (P),
    ``action_shape`` (A) and ``action_dtype`` ("float32" or "int32": actions as a batch stores them).
    """

    name: ClassVar[str]
    spaces: ClassVar[tuple[type[gym.Space], ...]]
    configurable: ClassVar[bool] = False

    sample_conversion_problem: ClassVar[str | None] = None
    """Why TFLite (LiteRT) and ONNX cannot run :meth:`sample` (their files then leave it out), or None."""

    xla_dynamic_batch: ClassVar[bool] = True
    """Whether the policy update may compile this distribution with XLA for a batch of unknown size;
    when False it compiles one graph per batch size (see :class:`~trpo_tf.update.PolicyUpdate`)."""

    param_size: int
    action_shape: tuple[int, ...]
    action_dtype: str
    mask_components: np.ndarray | None = None
    """[C]: the number of choices of each component an action mask covers (Σ = M), in the order the mask
    concatenates them; None for a distribution that takes no mask."""

    @property
    def mask_size(self) -> int | None:
        """M, the length of an action mask [B, M] this distribution honours; None when it takes none."""
        return None if self.mask_components is None else int(np.sum(self.mask_components))

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            return  # an intermediate class shares its parent's name: not registered
        registered = DISTRIBUTIONS.get(cls.name)
        if registered is not None and registered.__qualname__ != cls.__qualname__:
            raise TypeError(f"action distribution name {cls.name!r} is taken by {registered.__module__}."
                            f"{registered.__qualname__}")
        DISTRIBUTIONS[cls.name] = cls

    @classmethod
    def for_space(cls, space: gym.Space, init_log_std: float = 0.0) -> ActionDistribution:
        """The distribution of this class over ``space``; :class:`UnsupportedSpaceError` when it cannot model it.

        ``init_log_std`` is the initial log-std of distributions that have one (ignored by the others).
        """
        raise NotImplementedError

    def free_parameters(self) -> dict[str, tuple[tuple[int, ...], float]]:
        """Trainable parameters not computed by the network: name → (shape, initial value). None by default."""
        return {}

    # ------------------------------------------------------------------ TensorFlow side

    def parameters(self, outputs: tf.Tensor, free: Mapping[str, tf.Tensor]) -> list[tf.Tensor]:
        """η: the tensors the distribution is built from, network outputs [B, P] first, then any ``free``
        parameters. The default is the outputs alone."""
        return [outputs]

    def tfp_distribution(self, parameters: Sequence[tf.Tensor]) -> Any:
        """The TensorFlow Probability distribution (batch [B], events A) with parameters η."""
        raise NotImplementedError

    def named_parameters(self, parameters: Sequence[tf.Tensor]) -> dict[str, tf.Tensor]:
        """η by name, batch first (the export's ``distribution`` signature), from ``parameters`` (η as
        :meth:`parameters` returns them)."""
        raise NotImplementedError

    def deterministic(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
        """The deterministic action [B, *A] in the environment's units, from ``parameters`` (η)."""
        raise NotImplementedError

    def sample(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
        """A random action [B, *A] in the environment's units, drawn from the distribution with ``parameters``
        (η), from stateful random ops (which LiteRT runs, unless ``sample_conversion_problem`` says why not)."""
        raise NotImplementedError

    def mask_tensorflow(self, outputs: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """Network outputs [B, P] and a bool action mask [B, M] → the outputs of the masked distribution
        [B, P], in which every masked action has probability exactly 0 (``mask_size`` is set)."""
        raise UnsupportedSpaceError(f"the {self.name} distribution takes no action mask")

    # ------------------------------------------------------------------ NumPy side

    def act(self, outputs: np.ndarray, free: Arrays, rng: np.random.Generator | None) -> np.ndarray:
        """Actions [B, *A] as a batch stores them, from network ``outputs`` [B, P] and the ``free`` parameters
        as arrays (empty for a distribution without any); drawn with ``rng``, or the deterministic ones
        when ``rng`` is None."""
        raise NotImplementedError

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """Stored actions [B, *A] → the actions sent to the environment."""
        return actions

    def mask_numpy(self, outputs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """:meth:`mask_tensorflow` in NumPy: outputs [B, P] and an action mask [B, M] (nonzero: allowed)
        → masked outputs [B, P]."""
        raise UnsupportedSpaceError(f"the {self.name} distribution takes no action mask")

    def actions(self, outputs: np.ndarray, free: Arrays, rng: np.random.Generator | None,
                mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(actions for the environment, actions as stored) [B, *A] from network ``outputs`` [B, P] and the
        ``free`` parameters, drawn with ``rng`` (the deterministic ones when None), among the actions
        ``mask`` [B, M] allows when given."""
        stored = self.act(outputs if mask is None else self.mask_numpy(outputs, mask), free, rng)
        return self.to_env(stored), stored

    def __repr__(self) -> str:
        return f"{type(self).__name__}(action_shape={self.action_shape}, param_size={self.param_size})"


DEFAULT_DISTRIBUTION = "gaussian"
"""``TRPOConfig.action_distribution``'s default. It names the distribution of Box actions; for any
other space, the space's own distribution is used instead."""


def make_distribution(space: gym.Space, name: str = DEFAULT_DISTRIBUTION,
                      init_log_std: float = 0.0) -> ActionDistribution:
    """The action distribution over ``space``: the one named ``name`` (``TRPOConfig.action_distribution``),
    except that the default name leaves a space it does not model to that space's own distribution
    (the registered distribution that is not ``configurable`` and models it). ``init_log_std`` is the
    initial log-std of a distribution that has one (the Gaussian's); the others ignore it.

    Raises :class:`~trpo_tf.errors.ConfigError` for an unknown ``name`` and
    :class:`UnsupportedSpaceError` when no distribution models ``space``, or the named one cannot.
    """
    if name not in DISTRIBUTIONS:
        raise ConfigError(f"unknown action distribution {name!r}; choose one of {configurable_names()}")
    chosen: type[ActionDistribution] | None = DISTRIBUTIONS[name]
    if name == DEFAULT_DISTRIBUTION and not isinstance(space, DISTRIBUTIONS[name].spaces):
        chosen = next((candidate for candidate in DISTRIBUTIONS.values()
                       if not candidate.configurable and isinstance(space, candidate.spaces)), None)
    if chosen is None:
        raise UnsupportedSpaceError(f"unsupported action space {space!r}: trpo_tf supports "
                                    f"{supported_action_spaces()}")
    return chosen.for_space(space, init_log_std=init_log_std)


def configurable_names() -> tuple[str, ...]:
    """The names ``TRPOConfig.action_distribution`` accepts: the registered configurable distributions."""
    return tuple(name for name, cls in DISTRIBUTIONS.items() if cls.configurable)


def supported_action_spaces() -> str:
    """The action space kinds some registered distribution models, for messages: "Box, Discrete, ..."."""
    names = dict.fromkeys(space.__name__ for cls in DISTRIBUTIONS.values() for space in cls.spaces)
    listed = list(names)
    return ", ".join(listed[:-1]) + f" and {listed[-1]}" if len(listed) > 1 else "".join(listed)


class FlatEvents:
    """A TFP distribution over flat events [B, K] that takes actions [B, *A] (A with K elements).

    ``distribution`` is the wrapped TFP distribution over [B, K] (kept as ``inner``); ``action_shape`` is A,
    whose element count K it reshapes actions to.
    """

    def __init__(self, distribution: Any, action_shape: tuple[int, ...]):
        self.inner = distribution
        self.event_size = int(np.prod(action_shape))

    def log_prob(self, actions: tf.Tensor) -> tf.Tensor:
        """Log-probabilities [B] of ``actions`` [B, *A], flattened to [B, K] for the wrapped distribution."""
        import tensorflow as tf
        return self.inner.log_prob(tf.reshape(actions, [-1, self.event_size]))

    def entropy(self) -> tf.Tensor:
        """The wrapped distribution's entropy per batch element [B]."""
        return self.inner.entropy()


def kl_divergence(old: Any, new: Any) -> tf.Tensor:
    """KL(old ‖ new) per batch element [B], from TFP's registered closed forms."""
    import tensorflow_probability as tfp
    if isinstance(old, FlatEvents):
        return tfp.distributions.kl_divergence(old.inner, new.inner)
    return tfp.distributions.kl_divergence(old, new)
