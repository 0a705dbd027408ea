"""The search space of ``trpo-tf tune``: which :class:`~trpo_tf.TRPOConfig` fields a trial samples, and from what.

A space maps field names to a :class:`Choices` (a list of values) or a :class:`Range` (numbers
between ``low`` and ``high``, on a log scale when ``log``). :func:`default_space` is the
documented default (docs/tuning.md); a YAML space file (:func:`read_space_file`) replaces it,
or with ``extends: default`` changes, adds or (with ``null``) drops single keys of it::

    extends: default
    max_kl: {low: 0.005, high: 0.03, log: true}
    policy_hidden: [[64, 64], [128, 128]]
    entropy_coef: null

:func:`check_space` refuses a space some of whose values TRPOConfig would refuse, before any trial.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from typing import TYPE_CHECKING, Any, Mapping, Union

import gymnasium as gym
import numpy as np

from trpo_tf import presets
from trpo_tf.config import TRPOConfig, field_names
from trpo_tf.errors import ConfigError

if TYPE_CHECKING:
    import optuna

EXTENDS_KEY = "extends"  # `extends: default` in a space file: start from the default space
RANGE_KEYS = ("low", "high", "log", "step")


@dataclasses.dataclass(frozen=True)
class Choices:
    """One of ``values`` (any YAML values: numbers, strings, lists such as layer widths)."""

    values: tuple[Any, ...]

    def corners(self) -> tuple[Any, ...]:
        """The values whose validity stands for the whole parameter: all of them."""
        return self.values

    def suggest(self, trial: optuna.trial.Trial, name: str) -> Any:
        """The trial's value of the parameter ``name`` (Optuna's categorical choices are scalars: others go
        as their JSON text)."""
        encoded = [_optuna_choice(value) for value in self.values]
        return self.values[encoded.index(trial.suggest_categorical(name, encoded))]

    def distribution(self) -> optuna.distributions.BaseDistribution:
        """The Optuna distribution :meth:`suggest` samples from."""
        import optuna
        return optuna.distributions.CategoricalDistribution([_optuna_choice(value) for value in self.values])

    def describe(self) -> str:
        """The choices, as the documentation and messages show them: "a / b / c"."""
        return " / ".join(json.dumps(value) for value in self.values)


@dataclasses.dataclass(frozen=True)
class Range:
    """A number in [low, high], integers when both bounds are integers; ``log``: uniform in log(x);
    ``step``: only low, low + step, ... (not with ``log``)."""

    low: int | float
    high: int | float
    log: bool = False
    step: int | float | None = None

    @property
    def integer(self) -> bool:
        """Whether the range holds whole numbers (both bounds are integers)."""
        return isinstance(self.low, int) and isinstance(self.high, int)

    def corners(self) -> tuple[Any, ...]:
        """The values whose validity stands for the whole range: its bounds."""
        return (self.low, self.high)

    def suggest(self, trial: optuna.trial.Trial, name: str) -> Any:
        """The trial's value of the parameter ``name``."""
        if self.integer:
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def distribution(self) -> optuna.distributions.BaseDistribution:
        """The Optuna distribution :meth:`suggest` samples from."""
        import optuna
        if self.integer:
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log,
                                                        step=int(self.step or 1))
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def describe(self) -> str:
        """The range, as the documentation and messages show it: "low … high", then ", log scale" and ", step s"
        when they apply."""
        text = f"{self.low} … {self.high}"
        return text + (", log scale" if self.log else "") + (f", step {self.step}" if self.step else "")


Param = Union[Choices, Range]
Space = dict[str, Param]

WIDTHS = Choices(([64, 64], [128, 128], [256, 256]))
SCHEDULES = Choices(("constant", "linear"))
DEFAULT_SPACE: Mapping[str, Param] = {
    "max_kl": Range(0.002, 0.05, log=True),
    "max_kl_schedule": SCHEDULES,
    "gamma": Range(0.95, 0.999),
    "gae_lambda": Range(0.9, 0.99),
    "steps_per_iteration": Choices((512, 1024, 2048, 4096)),
    "n_envs": Choices((1, 2, 4)),  # times --workers
    "policy_hidden": WIDTHS,
    "value_hidden": WIDTHS,
    "activation": Choices(("tanh", "relu")),
    "value_lr": Range(1e-4, 3e-3, log=True),
    "value_lr_schedule": SCHEDULES,
    "value_epochs": Range(5, 30),
    "entropy_coef": Range(0.0, 0.01),
}
BOX_SPACE: Mapping[str, Param] = {"init_log_std": Range(-1.5, 0.5)}  # Box actions: the Gaussian's start
BOUNDED_BOX_SPACE: Mapping[str, Param] = {"action_distribution": Choices(("gaussian", "beta"))}  # finite bounds


def default_space(action_space: gym.Space, workers: int = 1) -> Space:
    """The default space for an environment with ``action_space``: :data:`DEFAULT_SPACE`, plus
    :data:`BOX_SPACE` for Box actions and :data:`BOUNDED_BOX_SPACE` when every bound is finite;
    the ``n_envs`` choices are multiplied by ``workers`` (each worker steps n_envs / workers)."""
    space = dict(DEFAULT_SPACE)
    space["n_envs"] = Choices(tuple(n * workers for n in DEFAULT_SPACE["n_envs"].corners()))
    if isinstance(action_space, gym.spaces.Box):
        space.update(BOX_SPACE)
        if np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high)):
            space.update(BOUNDED_BOX_SPACE)
    return space


def read_space_file(path: str, default: Mapping[str, Param]) -> Space:
    """The space the YAML file at ``path`` describes (see the module docstring), on top of ``default`` when it
    says ``extends: default``; ConfigError naming the key at fault."""
    return parse_space(presets.read_yaml_file(path, "space file"), path, default)


def parse_space(values: Any, source: str, default: Mapping[str, Param]) -> Space:
    """A space from its YAML mapping ``values`` (``source`` names it in errors; ``default``: the space that
    ``extends: default`` starts from)."""
    if not isinstance(values, dict) or not values:
        raise ConfigError(f"{source} must be a mapping of TRPOConfig fields to a list of choices or "
                          f"{{low: …, high: …}}, got {values!r}")
    values = dict(values)
    extends = values.pop(EXTENDS_KEY, None)
    if extends not in (None, "default"):
        raise ConfigError(f"{source}: '{EXTENDS_KEY}' can only be 'default', got {extends!r}")
    space = dict(default) if extends else {}
    for key, spec in values.items():
        if key not in field_names():
            raise ConfigError(f"{source}: unknown key {key!r}; the keys are '{EXTENDS_KEY}' and TRPOConfig fields: "
                              f"{', '.join(field_names())}")
        if spec is None and extends:
            space.pop(key, None)
        else:
            space[key] = parse_param(key, spec, source)
    if not space:
        raise ConfigError(f"{source} leaves nothing to tune")
    return space


def parse_param(key: str, spec: Any, source: str) -> Param:
    """One key of a space file, its ``spec``: a list → :class:`Choices`; ``{low, high[, log][, step]}`` →
    :class:`Range` (``source`` names the file in errors)."""
    where = f"{source}: {key}"
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"{where}: empty range (no choices)")
        return Choices(tuple(spec))
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a list of choices or {{low: …, high: …}}, got {spec!r} "
                          f"(to fix one value, use --set {key}=VALUE)")
    unknown = sorted(set(spec) - set(RANGE_KEYS))
    if unknown or "low" not in spec or "high" not in spec:
        raise ConfigError(f"{where}: a range is {{low: …, high: …}} with optional log: true or step: …, got {spec!r}")
    default = getattr(TRPOConfig(), key)
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        raise ConfigError(f"{where}: {key} is not a number: give a list of choices, not a range")
    kind = int if isinstance(default, int) else float
    low, high = _bound(spec["low"], kind, where, "low"), _bound(spec["high"], kind, where, "high")
    step = None if spec.get("step") is None else _bound(spec["step"], kind, where, "step")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false, got {log!r}")
    if low > high:
        raise ConfigError(f"{where}: empty range: low {spec['low']!r} > high {spec['high']!r}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got {low!r}")
    if step is not None and (step <= 0 or log):
        raise ConfigError(f"{where}: step must be > 0 and cannot go with log, got step {step!r}")
    return Range(low, high, log, step)


def _bound(value: Any, kind: type, where: str, name: str) -> int | float:
    """A range's ``name`` as ``kind`` (an int field takes whole numbers only)."""
    whole = isinstance(value, int) and not isinstance(value, bool)
    if not (whole or (kind is float and isinstance(value, float) and math.isfinite(value))):
        raise ConfigError(f"{where}: {name} must be {'an integer' if kind is int else 'a finite number'}, "
                          f"got {value!r}")
    return kind(value)


def without(space: Mapping[str, Param], fixed: Mapping[str, Any]) -> Space:
    """``space`` less the keys ``fixed`` sets (``--set`` wins over the space)."""
    return {key: param for key, param in space.items() if key not in fixed}


def check_space(space: Mapping[str, Param], base: Mapping[str, Any], fixed: Mapping[str, Any], source: str) -> None:
    """ConfigError naming the key unless TRPOConfig accepts every corner of ``space`` (each choice, each
    range's bounds), one key and every pair of keys at a time, with ``base`` and ``fixed`` values around
    (``source`` names the space in errors).

    TRPOConfig's own checks decide (including those across fields, such as steps_per_iteration being a
    multiple of n_envs); inside an integer range only the bounds are checked.
    """
    corners = {key: param.corners() for key, param in space.items()}
    starts = {key: values[0] for key, values in corners.items()}
    reference = {**base, **starts, **fixed}
    if not _valid(reference):  # blame the key without whose first value the config would be accepted, if any
        default = TRPOConfig().to_dict()
        culprit = next((key for key in starts if _valid({**reference, key: base.get(key, default[key])})), None)
        _accepted(reference, source if culprit is None else f"{source}: {culprit} {json.dumps(starts[culprit])}")
    for key, values in corners.items():
        for value in values:
            _accepted({**reference, key: value}, f"{source}: {key} {json.dumps(value)}")
    for (first, firsts), (second, seconds) in itertools.combinations(corners.items(), 2):
        for one, other in itertools.product(firsts, seconds):
            _accepted({**reference, first: one, second: other},
                      f"{source}: {first} {json.dumps(one)} with {second} {json.dumps(other)}")


def _valid(fields: Mapping[str, Any]) -> bool:
    try:
        TRPOConfig.from_dict(fields)
    except ConfigError:
        return False
    return True


def _accepted(fields: Mapping[str, Any], where: str) -> None:
    try:
        TRPOConfig.from_dict(fields)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def suggest(trial: optuna.trial.Trial, space: Mapping[str, Param]) -> dict[str, Any]:
    """The trial's value of every key of ``space`` (a retried trial gets its original values back)."""
    return {key: param.suggest(trial, key) for key, param in space.items()}


def describe(space: Mapping[str, Param]) -> dict[str, str]:
    """One line per key of ``space``, for messages and the study's record."""
    return {key: param.describe() for key, param in space.items()}


def _optuna_choice(value: Any) -> Any:
    """``value`` as an Optuna categorical choice: None, bool, int, float and str as they are, the rest as JSON."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value)
