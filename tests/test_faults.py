"""Fault fuzzing: bad hyperparameters, config files and environments end in a named InputError.

Each test tries many bad inputs, systematically: every TRPOConfig field with wrong types, NaN,
±inf, zero, negatives and NumPy scalars (the expected verdict is written here, from the ranges
the docs give, not taken from the code); config files with repeated keys or other encodings;
small gymnasium environments that return wrong shapes, dtypes, out-of-range or non-finite values
at reset, mid-episode and on an episode's last step, or raise themselves.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import yaml

from trpo_tf import TRPO, TRPOConfig, cli, presets
from trpo_tf.errors import ConfigError, EnvironmentValueError
from trpo_tf.policies import make_policy
from trpo_tf.sampling import InProcessSampler, SerialVectorEnv, make_vector_env

# --------------------------------------------------------------------------- TRPOConfig

INTEGERS = {"steps_per_iteration": 1, "n_envs": 1, "cg_iters": 1, "line_search_max_steps": 1, "value_epochs": 0,
            "value_batch_size": 1, "n_workers": 1, "cnn_features": 0, "recurrent_units": 1}  # field: smallest allowed
OPTIONAL_INTEGERS = {"recurrent_sequence_length": 1}  # None (the default) or an integer >= this
INTERVALS = {  # field: (low, high, low is open, high is open); None: no upper bound (inf itself is refused)
    "gamma": (0.0, 1.0, False, False), "gae_lambda": (0.0, 1.0, False, False), "max_kl": (0.0, None, True, True),
    "cg_damping": (0.0, None, False, True), "line_search_coef": (0.0, 1.0, True, True),
    "value_lr": (0.0, None, True, True), "entropy_coef": (0.0, None, False, True),
    "init_log_std": (-20.0, 5.0, False, False), "fisher_fraction": (0.0, 1.0, True, False),
    "ray_connect_timeout": (0.0, None, True, True)}
FLAGS = ("normalize_observations", "normalize_advantages", "normalize_rewards")
WIDTHS = ("policy_hidden", "value_hidden")
CHOICES = {"activation": ("tanh", "relu", "elu", "sigmoid"),
           "hvp_method": ("auto", "forward_over_backward", "double_backward", "gauss_newton"),
           "sampler": ("local", "ray"), "recurrent": (None, "lstm", "gru"), "action_masks": ("auto", "off"),
           "action_distribution": ("gaussian", "beta"), "algorithm": ("trpo", "npg"),
           "encoder": ("auto", "mlp", "nature_cnn", "small_cnn"), "max_kl_schedule": ("constant", "linear"),
           "value_lr_schedule": ("constant", "linear")}

NUMBERS: list[Any] = ["1", "0.5", None, [1], (0.5,), {"x": 1}, True, False, np.bool_(True), math.nan, math.inf,
                      -math.inf, 0, 0.0, -0.0, -1, -0.5, 0.5, 1, 1.0, 2, 2.5, -25.0, 10**400, 1e300,
                      np.int64(2), np.int32(1), np.uint8(4), np.float32(0.5), np.float64(0.25), np.float16(1.0),
                      np.float32(math.nan), np.float64(math.inf), np.float32(-math.inf), np.int64(-3),
                      np.array(0.5), complex(0.5, 0.0)]
FLAG_VALUES: list[Any] = [True, False, np.bool_(False), 1, 0, "true", None, [True], math.nan, np.int64(1)]
WIDTH_VALUES: list[Any] = [(8,), [8, 8], (np.int64(8),), (), (0,), (-1,), (8.0,), ("8",), (True,), 8, "8", None,
                           (math.nan,), [np.float32(8)], {8: 8}]
CHOICE_VALUES: list[Any] = ["Tanh", "", None, 1, ["tanh"], math.nan, b"tanh"]
ENV_KWARGS_VALUES: list[Any] = [{}, {"a": 1, "b": [1, 2], "c": {"d": None}}, None, [], "a=1", {1: 2},
                                {"a": object()}, {"a": math.nan}, {"a": [math.inf]}]


def is_real(value: Any) -> bool:
    """A Python or NumPy integer or float, not a bool (nor a 0-d array, a complex or a string)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def expected_number(field: str, value: Any) -> tuple[bool, Any]:
    """(accepted?, the plain value stored) for a number field, from the ranges in TRPOConfig's docs."""
    if field in INTEGERS:
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value >= INTEGERS[field]
        return ok, int(value) if ok else None
    low, high, low_open, high_open = INTERVALS[field]
    if not is_real(value):
        return False, None
    try:
        as_float = float(value)
    except OverflowError:
        return False, None
    ok = math.isfinite(as_float) and (as_float > low if low_open else as_float >= low)
    if high is not None:
        ok = ok and (as_float < high if high_open else as_float <= high)
    if isinstance(value, np.floating):  # stored as the shortest decimal of its own precision
        return ok, float(str(value))
    return ok, int(value) if isinstance(value, (int, np.integer)) else float(value)


def config_cases() -> list[tuple[str, Any, bool, Any]]:
    """(field, value, accepted?, stored value) for every field and every value tried on it."""
    cases = []
    for field in list(INTEGERS) + list(INTERVALS):
        values = [v for v in NUMBERS  # n_envs must divide 2048, n_workers must divide n_envs (1)
                  if not (field in ("n_envs", "n_workers") and is_real(v) and v >= 2)]
        cases += [(field, value, *expected_number(field, value)) for value in values]
    for field, smallest in OPTIONAL_INTEGERS.items():  # without recurrence, no segment length to divide
        for value in NUMBERS:
            ok = value is None or (isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
                                   and value >= smallest)
            cases.append((field, value, ok, None if value is None or not ok else int(value)))
    for field in FLAGS:
        cases += [(field, v, isinstance(v, (bool, np.bool_)), bool(v) if isinstance(v, (bool, np.bool_)) else None)
                  for v in FLAG_VALUES]
    for v in FLAG_VALUES:  # a flag that needs workers: alone (n_workers=1) only False is accepted
        ok = isinstance(v, (bool, np.bool_)) and not v
        cases.append(("restart_workers", v, ok, False if ok else None))
    for field in WIDTHS:
        for value in WIDTH_VALUES:
            ok = isinstance(value, (list, tuple)) and all(
                isinstance(w, (int, np.integer)) and not isinstance(w, (bool, np.bool_)) and w >= 1 for w in value)
            cases.append((field, value, ok, tuple(int(w) for w in value) if ok else None))
    for field, valid in CHOICES.items():
        cases += [(field, v, True, v) for v in valid] + [(field, v, False, None) for v in CHOICE_VALUES
                                                          if v not in valid]
    cases += [("action_masks", False, True, "off"), ("action_masks", True, False, None)]  # YAML reads off as false
    for value in ENV_KWARGS_VALUES:
        ok = isinstance(value, dict) and all(isinstance(k, str) for k in value) and value in ENV_KWARGS_VALUES[:2]
        cases.append(("env_kwargs", value, ok, value))
    return cases


CONFIG_CASES = config_cases()
FIELDS = sorted({case[0] for case in CONFIG_CASES})


def test_every_field_is_fuzzed():
    assert set(FIELDS) == set(TRPOConfig().to_dict())
    refused = sum(not case[2] for case in CONFIG_CASES)
    assert refused >= 300, refused  # the count the report gives


def verdict(field: str, value: Any, accepted: bool, stored: Any) -> str | None:
    """None when TRPOConfig(field=value) does what the docs say, else what it did instead."""
    try:
        config = TRPOConfig(**{field: value})
    except ConfigError as error:
        return None if not accepted and f"TRPOConfig.{field} " in str(error) else f"refused: {error}"
    except Exception as error:  # noqa: BLE001 - anything but ConfigError is a failure to report
        return f"{type(error).__name__}: {error}"
    if not accepted:
        return f"accepted as {getattr(config, field)!r}"
    kept, plain = getattr(config, field), config.to_dict()
    if kept != stored or type(kept) is not type(stored):  # plain int/float/bool/tuple
        return f"stored {kept!r}, expected {stored!r}"
    if json.loads(json.dumps(plain, allow_nan=False)) != plain or yaml.safe_load(yaml.safe_dump(plain)) != plain:
        return "does not survive JSON/YAML"  # what config.json, config.yaml and exports write
    return None


@pytest.mark.parametrize("field", FIELDS)
def test_config_field_accepts_or_refuses_with_the_field_named(field):
    wrong = {repr(value): verdict(field, value, accepted, stored)
             for name, value, accepted, stored in CONFIG_CASES if name == field}
    assert {value: problem for value, problem in wrong.items() if problem} == {}


@pytest.mark.parametrize("setting, field", [
    ("max_kl=.inf", "max_kl"), ("max_kl=.nan", "max_kl"), ("cg_damping=.inf", "cg_damping"),
    ("value_lr=.inf", "value_lr"), ("entropy_coef=.inf", "entropy_coef"), ("entropy_coef=-.inf", "entropy_coef"),
    ("gamma=1e400", "gamma"), ("cg_iters=1.5", "cg_iters"), ("n_envs=true", "n_envs"),
    ("policy_hidden=8", "policy_hidden"), ("value_batch_size=null", "value_batch_size"),
    ("activation=[tanh]", "activation"), ("normalize_rewards=1", "normalize_rewards"),
    ("env_kwargs={a: .nan}", "env_kwargs"),
])
def test_cli_set_refuses_bad_values_in_one_line(tmp_path, monkeypatch, capsys, setting, field):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "CartPole-v1", "--set", setting]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("trpo-tf: error: ") and f"TRPOConfig.{field} " in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text, message", [
    ("max_kl: 0.02\nmax_kl: 0.05\n", "duplicate key 'max_kl'"),
    ("env_kwargs:\n  a: 1\n  a: 2\n", "duplicate key 'a'"),
    ("timesteps: 100\ntimesteps: 200\n", "duplicate key 'timesteps'"),
])
def test_config_file_with_a_repeated_key_is_refused(tmp_path, monkeypatch, capsys, text, message):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"{re.escape(str(path))} is not valid YAML: .*{message}"):
        presets.read_file(str(path))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "CartPole-v1", "--config", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_config_file_that_is_not_utf8_is_named(tmp_path, monkeypatch, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("# réglages\nmax_kl: 0.02\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"config file {re.escape(str(path))} is not UTF-8 text \(byte b'\\xe9' "
                                          r"at offset 3\)"):
        presets.read_file(str(path))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "CartPole-v1", "--config", str(path)]) == 2
    assert f"config file {path} is not UTF-8" in capsys.readouterr().err


def test_yaml_merge_keys_may_still_override():
    assert presets.parse_yaml("base: &b {max_kl: 0.1}\nrun:\n  <<: *b\n  max_kl: 0.2\n")["run"] == {"max_kl": 0.2}


# --------------------------------------------------------------------------- environments

EPISODE = 5  # every episode is truncated after 5 steps
WHEN_STEPS = {"reset": 0, "mid": 3, "final": EPISODE, "autoreset": EPISODE}  # environment steps before the fault


class FaultyEnv(gym.Env):
    """Good observations and rewards (1.0) but one ``bad`` value in place of ``field`` at ``when``.

    ``when``: "reset" (the first reset), "mid" (step 3 of the first episode), "final" (step 5, the
    episode's last: its final observation), "autoreset" (the second reset, whose observation step 5
    returns). ``bad`` may be an exception instance, which is raised instead.
    """

    def __init__(self, space: gym.Space, field: str, when: str, bad: Any):
        self.observation_space = space
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.field, self.when, self.bad = field, when, bad
        self.t, self.resets = 0, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.t, self.resets = 0, self.resets + 1
        faulty = (self.when, self.resets) in (("reset", 1), ("autoreset", 2))
        return self._emit(self._observation(), faulty and self.field == "observation"), {}

    def step(self, action: np.ndarray) -> tuple[Any, Any, bool, bool, dict]:
        assert np.all(np.isfinite(action)), f"a NaN action {action}"  # as strict environments do
        self.t += 1
        faulty = self.resets == 1 and (self.when, self.t) in (("mid", 3), ("final", EPISODE))
        observation = self._emit(self._observation(), faulty and self.field == "observation")
        reward = self._emit(1.0, faulty and self.field == "reward")
        return observation, reward, False, self.t >= EPISODE, {}

    def _observation(self) -> Any:
        if isinstance(self.observation_space, gym.spaces.Discrete):
            return self.t % self.observation_space.n
        return np.full(self.observation_space.shape, float(self.t), np.float32)

    def _emit(self, good: Any, faulty: bool) -> Any:
        if not faulty:
            return good
        if isinstance(self.bad, Exception):
            raise self.bad
        return self.bad


BOX = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
DISCRETE = gym.spaces.Discrete(4)
BAD_BOX_OBSERVATIONS = {  # value: what the message shows
    "nan": (np.array([0.0, np.nan, 1.0], np.float32), r"a non-finite (final )?observation \[0.0, nan, 1.0\]"),
    "inf": (np.array([-np.inf, 0.0, 1.0]), r"a non-finite (final )?observation \[-inf, 0.0, 1.0\]"),
    "too_large": (np.array([0.0, 1e39, 1.0]), r"observation \[0.0, 1e\+39, 1.0\] too large for float32"),
    "long": (np.zeros(4, np.float32), r"observation of shape \(4,\)"),
    "short": (np.zeros(2, np.float32), r"observation of shape \(2,\)"),
    "same_count": (np.zeros((3, 1), np.float32), r"observation of shape \(3, 1\)"),  # once silently flattened
    "scalar": (0.5, r"observation of shape \(\)"),
    "strings": (np.array(["a", "b", "c"]), r"observation of dtype <U1, not a number type"),
    "objects": (np.array([None, 1.0, 2.0], dtype=object), r"observation of dtype object, not a number type"),
    "complex": (np.array([1j, 0, 0]), r"observation of dtype complex128, not a number type"),
    "none": (None, r"observation of shape \(\)"),
}
BAD_DISCRETE_OBSERVATIONS = {
    "negative": (-1, r"observation \[?-1(\.0)?\]? outside Discrete\(4\)"),  # once wrapped to state 3
    "too_big": (4, r"observation \[?4(\.0)?\]? outside Discrete\(4\)"),  # once an IndexError
    "fraction": (2.7, r"observation \[?2.7\]? outside Discrete\(4\)"),  # once truncated to state 2
    "nan": (math.nan, r"non-finite (final )?observation \[?nan\]?"),
    "array": (np.array([1, 2]), r"observation of shape \(2,\)"),
    "string": ("2", r"observation of dtype <U1, not a number type"),
}
BAD_REWARDS = {
    "nan": (math.nan, r"a non-finite reward nan"),
    "inf": (-math.inf, r"a non-finite reward -inf"),
    "too_large": (1e39, r"a reward 1e\+39 too large for float32"),
    "array": (np.array([1.0, 2.0]), r"the reward array\(\[1., 2.\]\), not one real number"),
    "one_element_array": (np.array([1.0]), r"the reward array\(\[1.\]\), not one real number"),
    "none": (None, r"the reward None, not one real number"),
    "string": ("1.0", r"the reward '1.0', not one real number"),
    "complex": (1 + 2j, r"the reward \(1\+2j\), not one real number"),
}


def env_cases() -> list[tuple[str, gym.Space, str, str, Any, str]]:
    """(id, space, field, when, bad value, message pattern) for each bad value at each place."""
    cases = []
    for space, table in ((BOX, BAD_BOX_OBSERVATIONS), (DISCRETE, BAD_DISCRETE_OBSERVATIONS)):
        for name, (bad, pattern) in table.items():
            for when in WHEN_STEPS:
                cases.append((f"{type(space).__name__}-{name}-{when}", space, "observation", when, bad, pattern))
    for name, (bad, pattern) in BAD_REWARDS.items():
        for when in ("mid", "final"):
            cases.append((f"reward-{name}-{when}", BOX, "reward", when, bad, pattern))
    return cases


ENV_CASES = env_cases()


@pytest.fixture(scope="module")
def snapshots() -> dict[str, Any]:
    """A small policy's acting snapshot for each observation space, by the space's class name."""
    actions = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    return {type(space).__name__: make_policy(space, actions, (4,), "tanh", 0.0, True, seed=0).snapshot()
            for space in (BOX, DISCRETE)}


def sampler_for(*envs: gym.Env) -> InProcessSampler:
    return InProcessSampler(SerialVectorEnv([lambda env=env: env for env in envs]), seed=0, rng=np.random.default_rng(0))


def test_env_case_count():
    assert len(ENV_CASES) == 4 * (len(BAD_BOX_OBSERVATIONS) + len(BAD_DISCRETE_OBSERVATIONS)) + 2 * len(BAD_REWARDS)


@pytest.mark.parametrize("case", ENV_CASES, ids=[case[0] for case in ENV_CASES])
def test_bad_environment_value_is_named_with_where_and_when(case, snapshots):
    _, space, field, when, bad, pattern = case
    what = "final observation" if (field, when) == ("observation", "final") else field
    call = "reset" if when == "reset" else "step"
    sampler = sampler_for(FaultyEnv(space, field, when, bad))
    with pytest.raises(EnvironmentValueError) as raised:
        sampler.collect(snapshots[type(space).__name__], 2 * EPISODE + 2)
    message = str(raised.value)
    assert message.startswith("environment 0 (FaultyEnv) returned "), message
    assert re.search(pattern, message), message
    assert what in message, message
    assert message.endswith(f"from {call}() after {WHEN_STEPS[when]} environment steps") or \
        f"from {call}() after {WHEN_STEPS[when]} environment steps; " in message, message
    assert sampler.total_steps == 0  # nothing was counted, nothing handed on to learn from


@pytest.mark.parametrize("when", ["reset", "mid", "final", "autoreset"])
def test_an_exception_the_environment_raises_propagates_with_its_own_message(when, snapshots):
    sampler = sampler_for(FaultyEnv(BOX, "observation", when, RuntimeError("the simulator diverged")))
    with pytest.raises(RuntimeError, match="^the simulator diverged$"):
        sampler.collect(snapshots["Box"], 2 * EPISODE + 2)


def test_an_environment_failure_caused_by_a_bad_value_names_the_value(snapshots):
    """A NaN observation gives a NaN action, on which FaultyEnv.step fails: the NaN is the error, the failure its cause."""
    sampler = sampler_for(FaultyEnv(BOX, "observation", "mid", np.array([np.nan, 0.0, 0.0], np.float32)))
    with pytest.raises(EnvironmentValueError, match=r"non-finite observation \[nan, 0.0, 0.0\] from step\(\) after 3 ") \
            as raised:
        sampler.collect(snapshots["Box"], 2 * EPISODE)
    assert isinstance(raised.value.__cause__, AssertionError)


def test_the_environment_index_and_step_count_with_several_environments(snapshots):
    good = FaultyEnv(BOX, "observation", "never", None)
    bad = FaultyEnv(BOX, "observation", "mid", np.array([0.0, 0.0, 1e39]))
    with pytest.raises(EnvironmentValueError, match=r"^environment 1 \(FaultyEnv\) returned an observation "
                                                    r"\[0.0, 0.0, 1e\+39\] too large .* after 6 environment steps$"):
        sampler_for(good, bad).collect(snapshots["Box"], 8)
    ragged = FaultyEnv(BOX, "observation", "mid", np.zeros(4, np.float32))
    with pytest.raises(EnvironmentValueError, match=r"^environment 1 \(FaultyEnv\) returned an observation of shape "
                                                    r"\(4,\) .* from step\(\) after 6 environment steps$"):
        sampler_for(FaultyEnv(BOX, "observation", "never", None), ragged).collect(snapshots["Box"], 8)


def test_training_stops_before_learning_from_a_bad_value():
    agent = TRPO(FaultyEnv(DISCRETE, "observation", "autoreset", -1), TRPOConfig(
        steps_per_iteration=64, policy_hidden=(4,), value_hidden=(4,)), seed=0)
    weights = [w.numpy().copy() for w in agent.policy.weights]
    with pytest.raises(EnvironmentValueError, match=r"environment 0 \(FaultyEnv\) returned an observation \[?-1"):
        agent.learn(64)
    assert agent.timesteps == 0 and not agent.history
    assert all(np.array_equal(w, v.numpy()) for w, v in zip(weights, agent.policy.weights))


def test_a_gymnasium_vector_env_is_checked_too(snapshots):
    """gymnasium's own SyncVectorEnv (SAME_STEP) stacks observations itself: the sampler still checks them."""
    vector = gym.vector.SyncVectorEnv([lambda: FaultyEnv(BOX, "observation", "final", np.array([0, 0, np.inf]))],
                                      autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    sampler = InProcessSampler(make_vector_env(vector, 1), seed=0, rng=np.random.default_rng(0))
    with pytest.raises(EnvironmentValueError, match=r"^environment 0 \(FaultyEnv\) returned a non-finite final "
                                                    r"observation \[0.0, 0.0, inf\] from step\(\) after 5 "):
        sampler.collect(snapshots["Box"], 2 * EPISODE)


def test_a_vector_env_with_rewards_of_the_wrong_shape_is_named(snapshots):
    class TwoRewards(gym.vector.SyncVectorEnv):
        """Returns one reward too many at every step."""

        def step(self, actions: np.ndarray) -> tuple:
            observations, rewards, terminated, truncated, info = super().step(actions)
            return observations, np.append(rewards, 0.0), terminated, truncated, info

    vector = TwoRewards([lambda: FaultyEnv(BOX, "observation", "never", None)],
                        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    with pytest.raises(EnvironmentValueError, match=r"^the vector environment returned rewards array\(\[1., 0.\]\) "
                                                    r"from step\(\) after 1 environment steps; expected one number "
                                                    r"per environment, shape \(1,\)$"):
        InProcessSampler(vector, seed=0, rng=np.random.default_rng(0)).collect(snapshots["Box"], 3)
