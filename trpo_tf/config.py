"""Every TRPO hyperparameter, its default and its validation."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from typing import Any, Iterable, Mapping

import numpy as np

from trpo_tf.errors import ConfigError
from trpo_tf import sampling
from trpo_tf.sampling import masks
from trpo_tf.policies import distributions, encoders

ACTIVATIONS = ("tanh", "relu", "elu", "sigmoid")
HVP_METHODS = ("forward_over_backward", "double_backward", "gauss_newton")
HVP_CHOICES = ("auto",) + HVP_METHODS  # TRPOConfig.hvp_method: a method, or "auto" (see TRPOConfig.curvature_method)
RECURRENT_CELLS = (None, "lstm", "gru")  # TRPOConfig.recurrent: no recurrence, or the cell that carries a state
ALGORITHMS = ("trpo", "npg")  # the step: backtracked to the trust region, or the natural gradient's full step
SCHEDULES = ("constant", "linear")  # how max_kl and value_lr change over a run (TRPOConfig.scheduled)


@dataclasses.dataclass(frozen=True)
class TRPOConfig:
    """Hyperparameters of a TRPO run. Invalid values raise ``ConfigError`` (a ValueError) naming the field.

    Sampling: ``steps_per_iteration`` environment steps per update, summed over all
    ``n_envs`` parallel environments (it must divide evenly).
    Trust region: ``max_kl`` is δ in KL(π_old ‖ π_new) ≤ δ; ``cg_iters`` and ``cg_damping``
    set the conjugate-gradient solve of (H + damping·I) x = g; the backtracking line search
    tries ``line_search_coef``**j for j < ``line_search_max_steps``. ``algorithm="npg"`` takes
    the full step instead (natural policy gradient: no line search, never restored).
    Advantages: GAE(``gamma``, ``gae_lambda``), normalized per batch when
    ``normalize_advantages``.
    Value function: Adam(``value_lr``), ``value_epochs`` shuffled passes of minibatches of
    ``value_batch_size`` over the batch's λ-returns.
    Schedules: ``max_kl_schedule`` and ``value_lr_schedule`` are "constant" or "linear"; linear
    scales the value by the fraction of the run still to go when an iteration starts,
    1 − timesteps / total (``total``: the step count the running ``learn`` call trains to), so
    it falls from the full value towards 0 at the end (Engstrom et al. 2020 decay δ so in TRPO+).
    Models: MLPs of ``policy_hidden`` / ``value_hidden`` units with ``activation``; running
    mean/std observation normalization when ``normalize_observations``; rewards divided by the
    running std of the discounted return when ``normalize_rewards``; the surrogate
    gains ``entropy_coef`` × mean entropy; a Gaussian policy starts at log-std ``init_log_std``.
    Box actions: ``action_distribution`` "gaussian" (a diagonal Gaussian, clipped to the bounds in
    the environment) or "beta" (a Beta per dimension on [low, high], Chou et al. 2017; needs finite
    bounds); other action spaces ignore it.
    Observations: ``encoder`` names what reads them: ``"auto"`` sends uint8 frames (a rank-3
    ``Box``, HWC or CHW) through the Nature-DQN CNN when both sides are at least 36 pixels, through
    a small 3×3 CNN otherwise, and flattens everything else into the MLP; ``"mlp"`` flattens every
    ``Box``; ``"nature_cnn"`` / ``"small_cnn"`` choose the CNN for every frame. ``cnn_features``
    is the width of the CNN's last (dense) layer: 0 means the architecture's own (512 for the
    Nature CNN, 128 for the small one).
    Curvature: ``hvp_method`` picks how H·v of the mean KL is computed (forward-over-backward
    autodiff, double backward, or the Gauss–Newton form Jᵀ M J v — equal at θ_old; ``"auto"``:
    forward-over-backward, or double backward for a recurrent policy, see :attr:`curvature_method`);
    ``fisher_fraction`` < 1 computes it on every ⌈1/fraction⌉-th sample of the batch only
    (as OpenAI Baselines does with every 5th), while the line search checks the KL on all.
    Workers: ``n_workers`` > 1 samples in that many processes (``sampler="local"``) or Ray
    actors (``sampler="ray"``; one actor with ``n_workers=1``), each stepping
    ``n_envs / n_workers`` environments with its own copy of the policy. ``restart_workers``
    replaces a worker that dies or whose environment raises, with fresh environments, and
    samples its segment again (history: ``worker_restarts``); without it the failure stops
    training, naming the worker and where it ran. ``ray_connect_timeout``: seconds to wait for the Ray
    cluster at ``RAY_ADDRESS`` to answer before giving up with an error naming it.
    Environment: ``env_kwargs`` go to ``gymnasium.make`` for every environment built from the
    agent's env id (training, evaluation); checkpoints and exports record them with the rest.
    Action masks: ``action_masks="auto"`` reads the masks a Discrete or MultiDiscrete environment
    gives (``info["action_mask"]``, an ``action_masks()`` method, or a Dict observation key
    ``action_mask``, in that order; see :mod:`trpo_tf.sampling.masks`): masked actions are never
    taken, and the policy's probabilities, entropy and KL are those over the allowed actions;
    ``"off"`` ignores them.
    Recurrence: ``recurrent`` ``"lstm"`` or ``"gru"`` puts a recurrent cell of ``recurrent_units`` units
    between the encoder (and CNN, if any) and the MLP, in the policy and, with its own cell, in the value
    function (see :mod:`trpo_tf.policies.recurrent`); None (the default) keeps both feed-forward. The update
    recomputes the hidden states over each environment's segment, reset at episode starts;
    ``recurrent_sequence_length`` L (None: the whole segment) truncates backpropagation through time to
    windows of L steps (the states still run over the whole segment; gradients stop at window starts),
    and the value fit's minibatches are such windows. It must divide ``steps_per_iteration / n_envs``.
    A recurrent policy cannot use ``hvp_method`` "forward_over_backward" or "gauss_newton" (their
    forward-mode autodiff does not go through the recurrent loop; "auto" picks "double_backward") or ``fisher_fraction`` < 1 (every state is needed for any), and takes no
    action masks (an environment that gives them needs ``action_masks="off"``): each raises ConfigError
    naming the combination.

    Numbers may be NumPy scalars (``np.int64(2048)``, ``np.float32(0.01)``); they are stored as
    plain Python numbers (a float32 as the shortest decimal that denotes it: 0.01), so config.yaml
    and JSON stay plain. Every number must be finite: no range here is closed or open at infinity.
    """

    steps_per_iteration: int = 2048
    n_envs: int = 1
    gamma: float = 0.99
    gae_lambda: float = 0.95
    max_kl: float = 0.01
    max_kl_schedule: str = "constant"
    cg_iters: int = 10
    cg_damping: float = 0.1
    line_search_coef: float = 0.8
    line_search_max_steps: int = 10
    algorithm: str = "trpo"
    value_lr: float = 1e-3
    value_lr_schedule: str = "constant"
    value_epochs: int = 10
    value_batch_size: int = 128
    policy_hidden: tuple[int, ...] = (64, 64)
    value_hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    normalize_observations: bool = True
    normalize_advantages: bool = True
    normalize_rewards: bool = False
    entropy_coef: float = 0.0
    init_log_std: float = 0.0
    hvp_method: str = "auto"
    fisher_fraction: float = 1.0
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    n_workers: int = 1
    sampler: str = "local"
    restart_workers: bool = False
    ray_connect_timeout: float = 30.0
    action_distribution: str = "gaussian"
    encoder: str = "auto"
    cnn_features: int = 0
    action_masks: str = "auto"
    recurrent: str | None = None
    recurrent_units: int = 64
    recurrent_sequence_length: int | None = None

    def __post_init__(self) -> None:
        for name in ("policy_hidden", "value_hidden"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, name, tuple(_plain_int(width) for width in value))
        self._check_int("steps_per_iteration", 1)
        self._check_int("n_envs", 1)
        self._check_int("cg_iters", 1)
        self._check_int("line_search_max_steps", 1)
        self._check_int("value_epochs", 0)
        self._check_int("value_batch_size", 1)
        self._check_float("gamma", 0.0, 1.0)
        self._check_float("gae_lambda", 0.0, 1.0)
        self._check_float("max_kl", 0.0, None, low_open=True)
        self._check_float("cg_damping", 0.0, None)
        self._check_float("line_search_coef", 0.0, 1.0, low_open=True, high_open=True)
        self._check_float("value_lr", 0.0, None, low_open=True)
        self._check_float("entropy_coef", 0.0, None)
        self._check_float("init_log_std", -20.0, 5.0)
        for name in ("normalize_observations", "normalize_advantages", "normalize_rewards", "restart_workers"):
            if isinstance(getattr(self, name), np.bool_):
                object.__setattr__(self, name, bool(getattr(self, name)))
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"TRPOConfig.{name} must be True or False, got {getattr(self, name)!r}")
        for name in ("policy_hidden", "value_hidden"):
            sizes = getattr(self, name)
            if not isinstance(sizes, tuple) or not all(_is_int(s) and s >= 1 for s in sizes):
                raise ConfigError(
                    f"TRPOConfig.{name} must be a sequence of positive layer widths, got {sizes!r}")
        self._check_float("fisher_fraction", 0.0, 1.0, low_open=True)
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"TRPOConfig.algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        for name in ("max_kl_schedule", "value_lr_schedule"):
            if getattr(self, name) not in SCHEDULES:
                raise ConfigError(f"TRPOConfig.{name} must be one of {SCHEDULES}, got {getattr(self, name)!r}")
        if self.hvp_method not in HVP_CHOICES:
            raise ConfigError(f"TRPOConfig.hvp_method must be one of {HVP_CHOICES}, got {self.hvp_method!r}")
        self._check_int("n_workers", 1)
        self._check_float("ray_connect_timeout", 0.0, None, low_open=True)
        if self.sampler not in sampling.backend_names():
            raise ConfigError(f"TRPOConfig.sampler must be one of {sampling.backend_names()}, got {self.sampler!r}")
        if self.restart_workers and self.n_workers == 1 and self.sampler == sampling.IN_PROCESS_BACKEND:
            raise ConfigError("TRPOConfig.restart_workers needs sampling workers (n_workers > 1 or sampler='ray'): "
                              "with n_workers=1 the environments step in this process")
        if self.n_envs % self.n_workers:
            raise ConfigError(f"TRPOConfig.n_envs ({self.n_envs}) must be a multiple of n_workers "
                              f"({self.n_workers}): each worker steps n_envs / n_workers environments")
        if self.action_distribution not in distributions.configurable_names():
            raise ConfigError(f"TRPOConfig.action_distribution must be one of {distributions.configurable_names()}, "
                              f"got {self.action_distribution!r}")
        if self.encoder not in encoders.CHOICES:
            raise ConfigError(f"TRPOConfig.encoder must be one of {encoders.CHOICES}, got {self.encoder!r}")
        self._check_int("cnn_features", 0)
        if self.action_masks is False:  # YAML 1.1 (config files, --set) reads a bare off as false
            object.__setattr__(self, "action_masks", "off")
        if self.action_masks not in masks.MODES:
            raise ConfigError(f"TRPOConfig.action_masks must be one of {masks.MODES}, got {self.action_masks!r}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"TRPOConfig.activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if not isinstance(self.env_kwargs, Mapping) or not all(isinstance(k, str) for k in self.env_kwargs):
            raise ConfigError("TRPOConfig.env_kwargs must be a mapping of gymnasium.make keyword arguments, "
                             f"got {self.env_kwargs!r}")
        try:  # as checkpoints and exports record them (tuples become lists), so a restored run equals this one
            object.__setattr__(self, "env_kwargs", json.loads(json.dumps(dict(self.env_kwargs), allow_nan=False)))
        except (TypeError, ValueError):
            raise ConfigError("TRPOConfig.env_kwargs must hold plain values (finite numbers, strings, booleans, lists, "
                             f"mappings), as checkpoints and exports record them; got {self.env_kwargs!r}") from None
        if self.steps_per_iteration % self.n_envs:
            raise ConfigError(
                f"TRPOConfig.steps_per_iteration ({self.steps_per_iteration}) must be a multiple of "
                f"n_envs ({self.n_envs})")
        self._check_recurrence()

    def _check_recurrence(self) -> None:
        """ConfigError for a bad ``recurrent*`` field, or recurrence asked with what it cannot do."""
        if not (self.recurrent is None or (isinstance(self.recurrent, str) and self.recurrent in RECURRENT_CELLS)):
            raise ConfigError(f"TRPOConfig.recurrent must be one of {RECURRENT_CELLS}, got {self.recurrent!r}")
        self._check_int("recurrent_units", 1)
        if self.recurrent_sequence_length is not None:
            self._check_int("recurrent_sequence_length", 1)
        if self.recurrent is None:
            return
        named = f"TRPOConfig.recurrent={self.recurrent!r}"
        if self.recurrent_sequence_length is not None and self.steps_per_env % self.recurrent_sequence_length:
            raise ConfigError(f"TRPOConfig.recurrent_sequence_length ({self.recurrent_sequence_length}) must divide "
                              f"the segment each environment samples per iteration, steps_per_iteration / n_envs = "
                              f"{self.steps_per_env}")
        if self.hvp_method in ("forward_over_backward", "gauss_newton"):
            raise ConfigError(f"{named} cannot use hvp_method={self.hvp_method!r}: forward-mode autodiff (which it "
                              "uses) does not go through the recurrent loop (tf.while_loop); use "
                              "hvp_method='double_backward' (what 'auto' picks)")
        if self.fisher_fraction != 1.0:
            raise ConfigError(f"{named} cannot use fisher_fraction={self.fisher_fraction} < 1: the hidden states of "
                              "every step are computed for any, so subsampling saves nothing; use fisher_fraction=1")

    @property
    def curvature_method(self) -> str:
        """The H·v method the update uses: ``hvp_method``, with "auto" resolved (forward-over-backward, or
        double backward for a recurrent policy)."""
        if self.hvp_method != "auto":
            return self.hvp_method
        return "forward_over_backward" if self.recurrent is None else "double_backward"

    @property
    def recurrent_state_size(self) -> int:
        """S, the width of one environment's recurrent state: 2·units for an LSTM ([h, c]), units for a
        GRU, 0 without recurrence."""
        return {None: 0, "lstm": 2 * self.recurrent_units, "gru": self.recurrent_units}[self.recurrent]

    @property
    def steps_per_env(self) -> int:
        """Rollout length T of each environment per iteration."""
        return self.steps_per_iteration // self.n_envs

    def scheduled(self, name: str, remaining: float) -> float:
        """Field ``name`` ("max_kl" or "value_lr") under its schedule, with ``remaining`` ∈ [0, 1]
        the fraction of the run still to go: the value itself when constant, value × remaining
        when linear."""
        value = getattr(self, name)
        return value * remaining if getattr(self, f"{name}_schedule") == "linear" else value

    def replace(self, **changes: Any) -> "TRPOConfig":
        """A copy with ``changes`` applied; unknown names raise ``ConfigError`` (see :func:`check_field_names`)."""
        check_field_names(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view (tuples become lists) for JSON/YAML."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))

    @classmethod
    def preset(cls, env_id: str, **changes: Any) -> "TRPOConfig":
        """The tuned config ``trpo-tf train ENV_ID`` uses (``trpo_tf/presets/<ENV_ID>.yaml``), with ``changes``.

        ConfigError naming the environments that have one when ``env_id`` has none. The
        preset's run length: ``trpo_tf.presets.load(env_id)[1]``.
        """
        from trpo_tf import presets
        preset = presets.load(env_id)
        if preset is None:
            raise ConfigError(f"no preset for {env_id!r}; presets exist for {', '.join(presets.available())} "
                              "(TRPOConfig() gives the defaults)")
        return cls.from_dict(preset[0]).replace(**changes)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TRPOConfig":
        """The config of the fields in ``values`` (the defaults for the others): the inverse of
        :meth:`to_dict`; unknown keys raise ``ConfigError``."""
        return cls().replace(**dict(values))

    def _check_int(self, name: str, minimum: int) -> None:
        """Store field ``name`` as a plain int; ConfigError unless it is a whole number >= ``minimum``."""
        value = _plain_int(getattr(self, name))
        if not _is_int(value) or value < minimum:
            raise ConfigError(f"TRPOConfig.{name} must be an integer >= {minimum}, got {value!r}")
        object.__setattr__(self, name, value)

    def _check_float(self, name: str, low: float, high: float | None,
                     low_open: bool = False, high_open: bool = False) -> None:
        """Store field ``name`` as a plain number; ConfigError unless it is finite and in the interval."""
        value = getattr(self, name)
        if isinstance(value, np.floating):
            value = float(str(value))  # the shortest decimal of its own precision: float32 0.01 → 0.01
        value = _plain_int(value)
        ok = (_is_int(value) or isinstance(value, float)) and _finite(value)
        if ok:
            ok = (value > low if low_open else value >= low)
            if high is not None:
                ok = ok and (value < high if high_open else value <= high)
        if not ok:
            interval = ("(" if low_open else "[") + f"{low}, " + (
                "inf)" if high is None else f"{high}" + (")" if high_open else "]"))
            raise ConfigError(f"TRPOConfig.{name} must be a number in {interval}, got {value!r}")
        object.__setattr__(self, name, value)


def field_names() -> list[str]:
    """The public hyperparameter names, in declaration order."""
    return [f.name for f in dataclasses.fields(TRPOConfig)]


def check_field_names(names: Iterable[str], source: str | None = None) -> None:
    """ConfigError unless every name is a TRPOConfig field: it names each unknown one with the fields
    close to it ("did you mean"), then every valid field; ``source`` (a file, ``--set ...``) leads."""
    valid = field_names()
    unknown = sorted(set(names) - set(valid), key=str)
    if not unknown:
        return
    described = []
    for name in unknown:
        close = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.75)
        described.append(f"{name}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
    raise ConfigError(f"{source + ': ' if source else ''}unknown TRPOConfig field{'s' if len(unknown) > 1 else ''} "
                      f"{', '.join(described)}; valid fields: {', '.join(valid)}")


def _is_int(value: Any) -> bool:
    """Whether ``value`` is a Python int and not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: int | float) -> bool:
    """Whether ``value`` is a finite float64 (a Python int too large for one is not)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _plain_int(value: Any) -> Any:
    """A NumPy integer scalar as a Python int; anything else unchanged."""
    return int(value) if isinstance(value, np.integer) else value
