"""Exports answer what the agent answers, with TensorFlow alone, through the CLI, REST and LiteRT.

Four tiny agents cover every action head (Box, Discrete, MultiDiscrete, MultiBinary) and both
observation encoders (Box of any shape, Discrete). Each trains for two iterations, so its
normalizer statistics are far from (0, 1), and is exported once for the module. The exports
are checked against independent computations: the agent's NumPy forward pass, a Python
process in which trpo_tf and TensorFlow Probability cannot be imported, saved_model_cli,
Monte-Carlo frequencies of the sampling signature, and the LiteRT interpreter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import sys

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from ai_edge_litert.interpreter import Interpreter

import trpo_tf
from trpo_tf import TRPO, TRPOConfig, cli, export
from trpo_tf.errors import ExportError
from trpo_tf.evaluation import run_episodes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = TRPOConfig(steps_per_iteration=256, policy_hidden=(16,), value_hidden=(16,))
BATCH = 7
ISOLATED_MODULES = ("trpo_tf", "tensorflow_probability", "keras", "tf_keras", "gymnasium")


class ToyEnv(gym.Env):
    """Random observations from ``observation_space``; reward = sum of the action; 16-step episodes."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space):
        self.observation_space, self.action_space = observation_space, action_space
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.steps = 0
        return self._observe(), {}

    def step(self, action):
        self.steps += 1
        return self._observe(), float(np.sum(action)), False, self.steps >= 16, {}

    def _observe(self):
        space = self.observation_space
        if isinstance(space, gym.spaces.Discrete):
            return int(self.np_random.integers(space.start, space.start + space.n))
        return (2.0 + 3.0 * self.np_random.standard_normal(space.shape)).astype(np.float32)


def make_env(name: str):
    """An env id or a ToyEnv for each case."""
    if name == "multidiscrete":
        return ToyEnv(gym.spaces.Discrete(5, start=2), gym.spaces.MultiDiscrete([3, 4], start=[1, -1]))
    if name == "multibinary":
        return ToyEnv(gym.spaces.Box(-np.inf, np.inf, (2, 3), np.float32), gym.spaces.MultiBinary([2, 2]))
    return {"pendulum": "Pendulum-v1", "cartpole": "CartPole-v1"}[name]


CASES = ("pendulum", "cartpole", "multidiscrete", "multibinary")


@dataclasses.dataclass
class Exported:
    agent: TRPO
    out_dir: str  # the model folder; the export is its version 1
    path: str
    observations: np.ndarray  # [BATCH, *obs_shape] random raw observations


def random_observations(space: gym.Space, count: int, seed: int) -> np.ndarray:
    """float32 [count, *obs_shape]: wide Gaussians for Box (past the normalizer's clip), any value for Discrete."""
    rng = np.random.default_rng(seed)
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(space.start, space.start + space.n, size=count).astype(np.float32)
    return (rng.standard_normal((count,) + space.shape) * 4.0).astype(np.float32)


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Exported]:
    """Each case trained for 512 steps and exported as version 1 of its own model folder."""
    made = {}
    for i, name in enumerate(CASES):
        agent = TRPO(make_env(name), TINY, seed=i).learn(512)
        out_dir = str(tmp_path_factory.mktemp("exports") / name)
        path = agent.export(out_dir, command=f"test_export {name}")
        made[name] = Exported(agent, out_dir, path, random_observations(agent.observation_space, BATCH, seed=i))
    return made


@pytest.fixture(scope="module")
def loaded(exports) -> dict[str, tf.Module]:
    return {name: tf.saved_model.load(item.path) for name, item in exports.items()}


@pytest.fixture(scope="module")
def tflite_files(exports, tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("tflite")
    return {name: export.to_tflite(item.out_dir, str(folder / f"{name}.tflite")) for name, item in exports.items()}


# --------------------------------------------------------------------------- independent references

def numpy_outputs(agent: TRPO, observations: np.ndarray) -> np.ndarray:
    """Policy outputs [B, P]: the Keras network's weights applied by hand to normalized observations."""
    x = reference_features(agent, observations)
    for layer in agent.policy.network.layers:
        x = x @ layer.kernel.numpy() + layer.bias.numpy()
        x = np.tanh(x) if layer.name != "output" else x
    return x


def reference_features(agent: TRPO, observations: np.ndarray) -> np.ndarray:
    """(x − mean) / sqrt(var + 1e-8) clipped to ±10, from the normalizer's statistics; Discrete one-hot."""
    normalizer, space = agent.policy.normalizer, agent.observation_space
    if isinstance(space, gym.spaces.Discrete):
        x = np.eye(space.n, dtype=np.float32)[np.asarray(observations, np.int64) - space.start]
    else:
        x = np.asarray(observations, np.float32).reshape(len(observations), -1)
    return np.clip((x - normalizer.mean.numpy()) / np.sqrt(normalizer.var.numpy() + 1e-8), -10, 10)


def reference_parameters(agent: TRPO, observations: np.ndarray) -> dict[str, np.ndarray]:
    """The distribution's parameters, written out per space from the NumPy outputs."""
    outputs, space, batch = numpy_outputs(agent, observations), agent.action_space, len(observations)
    if isinstance(space, gym.spaces.Box):
        log_std = agent.policy.head.log_std.numpy()
        return {"mean": outputs.reshape((batch,) + space.shape),
                "log_std": np.broadcast_to(log_std, outputs.shape).reshape((batch,) + space.shape)}
    if isinstance(space, gym.spaces.Discrete):
        return {"logits": outputs}
    if isinstance(space, gym.spaces.MultiDiscrete):
        nvec = space.nvec.reshape(-1)
        logits = outputs.reshape(batch, len(nvec), nvec.max())
        return {"logits": np.where(np.arange(nvec.max()) < nvec[:, None], logits, logits - 1e9)}
    return {"logits": outputs.reshape((batch,) + space.shape)}


def reference_action(space: gym.Space, parameters: dict[str, np.ndarray]) -> np.ndarray:
    """The most probable action in environment units, from the distribution's parameters."""
    if isinstance(space, gym.spaces.Box):
        return np.clip(parameters["mean"], space.low, space.high)
    if isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete)):
        return parameters["logits"].argmax(-1) + space.start
    return (parameters["logits"] > 0).astype(np.int32)


def reference_value(agent: TRPO, observations: np.ndarray) -> np.ndarray:
    """V [B] from the Keras value model on NumPy-normalized features."""
    return agent.value(reference_features(agent, observations)).numpy()[:, 0]


def call(model: tf.Module, signature: str, observations: np.ndarray) -> dict[str, np.ndarray]:
    outputs = model.signatures[signature](observation=tf.constant(observations))
    return {key: value.numpy() for key, value in outputs.items()}


def isolated_python(*args: str, blocked=ISOLATED_MODULES, cwd: str, timeout: float = 120.0) -> str:
    """Run ``python -I -c PRELUDE SCRIPT ARGS`` with ``blocked`` unimportable; returns stdout.

    -I keeps PYTHONPATH, the user site and the working directory off sys.path; the prelude
    makes the blocked packages raise ImportError, checks that trpo_tf cannot be imported, then
    runs SCRIPT as __main__.
    """
    prelude = ("import importlib, runpy, sys\n"
               f"for name in {tuple(blocked)!r}: sys.modules[name] = None\n"
               "try:\n    importlib.import_module('trpo_tf')\nexcept ImportError:\n    pass\n"
               "else:\n    raise SystemExit('trpo_tf is importable: the isolation failed')\n"
               "sys.argv = sys.argv[1:]\n"
               "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    result = subprocess.run([sys.executable, "-I", "-c", prelude, *args], cwd=cwd, capture_output=True,
                            text=True, timeout=timeout, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def reference_returns(agent: TRPO, env_id: str, episodes: int, seed: int) -> list[float]:
    """Returns of episodes reset with seed + i, acting with agent.predict (deterministic)."""
    return run_episodes(gym.make(env_id), agent.predict, episodes, seed)["returns"]


# --------------------------------------------------------------------------- SavedModel

@pytest.mark.parametrize("name", CASES)
def test_signatures_answer_what_the_agent_computes(name, exports, loaded):
    item, model = exports[name], loaded[name]
    agent, obs = item.agent, item.observations
    assert set(model.signatures) == set(export.SIGNATURES)

    parameters = call(model, "distribution", obs)
    expected = reference_parameters(agent, obs)
    assert parameters.keys() == expected.keys()
    for key in expected:
        np.testing.assert_allclose(parameters[key], expected[key], rtol=1e-5, atol=1e-5, err_msg=key)

    action = call(model, "serving_default", obs)["action"]
    assert action.shape == (BATCH,) + agent.action_space.shape
    assert action.dtype == (np.float32 if isinstance(agent.action_space, gym.spaces.Box) else np.int32)
    np.testing.assert_allclose(action, agent.predict(obs, deterministic=True), atol=1e-5)
    np.testing.assert_allclose(action, reference_action(agent.action_space, expected), atol=1e-5)
    assert all(agent.action_space.contains(a) for a in action.astype(agent.action_space.dtype))

    value = call(model, "value", obs)["value"]
    np.testing.assert_allclose(value, reference_value(agent, obs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", CASES)
def test_sample_signature_draws_from_the_policy(name, exports, loaded):
    """Monte-Carlo frequencies of 4000 draws at one observation match the distribution's parameters."""
    item, model = exports[name], loaded[name]
    space, draws = item.agent.action_space, 4000
    one = item.observations[:1]
    actions = call(model, "sample", np.repeat(one, draws, axis=0))["action"]
    assert actions.shape == (draws,) + space.shape
    assert all(space.contains(a) for a in actions[:200].astype(space.dtype))
    parameters = {k: v[0] for k, v in reference_parameters(item.agent, one).items()}
    tolerance = 4.5 * 0.5 / np.sqrt(draws)  # 4.5 standard errors of a frequency

    if isinstance(space, gym.spaces.Box):
        mean, std = parameters["mean"][0], np.exp(parameters["log_std"][0])
        assert space.low[0] < mean - std and mean + std < space.high[0], "clipping would bias the check"
        for z, probability in ((-1.0, 0.1587), (0.0, 0.5), (1.0, 0.8413)):
            assert abs(np.mean(actions[:, 0] <= mean + z * std) - probability) < tolerance
    elif isinstance(space, gym.spaces.MultiBinary):
        probabilities = 1.0 / (1.0 + np.exp(-parameters["logits"]))
        assert np.max(np.abs(actions.mean(axis=0) - probabilities)) < tolerance
    else:
        logits = parameters["logits"].reshape(-1, parameters["logits"].shape[-1])  # [K, n]
        probabilities = np.exp(logits - logits.max(-1, keepdims=True))
        probabilities /= probabilities.sum(-1, keepdims=True)
        starts = np.asarray(space.start).reshape(-1)
        chosen = actions.reshape(draws, -1) - starts  # [draws, K], zero-based
        for k in range(len(starts)):
            frequencies = np.bincount(chosen[:, k], minlength=logits.shape[-1]) / draws
            assert np.max(np.abs(frequencies - probabilities[k])) < tolerance


@pytest.mark.parametrize("name", CASES)
def test_bad_observations_are_refused_by_every_signature(name, exports, loaded):
    item, model = exports[name], loaded[name]
    shape = item.agent.policy.encoder.shape
    if shape:  # wrong last size, no batch dimension, an extra dimension, flattened
        wrong_shapes = [(3,) + shape[:-1] + (shape[-1] + 1,), shape, (1, 1) + shape, (3 * int(np.prod(shape)),)]
    else:  # Discrete observations are [B]
        wrong_shapes = [(3, 1), (), (2, 3)]
    for signature in export.SIGNATURES:
        function = model.signatures[signature]
        for bad_shape in wrong_shapes:
            with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
                function(observation=tf.zeros(bad_shape, tf.float32))
        for dtype in (tf.float64, tf.int32):
            with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError)):
                function(observation=tf.zeros((2,) + shape, dtype))


def with_non_finite_entries(observations: np.ndarray) -> np.ndarray:
    """A copy of ``observations`` [B, ...] with NaN in row 0, +inf in row 1 and -inf in row 2 (B >= 4)."""
    flat = observations.reshape(len(observations), -1).copy()
    flat[0, 0], flat[1, -1], flat[2, 0] = np.nan, np.inf, -np.inf
    return flat.reshape(observations.shape)


def documented_outputs(agent: TRPO, observations: np.ndarray) -> dict[str, np.ndarray]:
    """What a converted export answers for ``observations`` with non-finite entries, as the export docs
    say: each normalized feature such an entry feeds is 0 (a Discrete observation: all of its features).
    Computed with the agent's Keras networks on features built here."""
    space, finite = agent.observation_space, np.isfinite(observations)
    if isinstance(space, gym.spaces.Discrete):
        features = reference_features(agent, np.where(finite, observations, space.start)) * finite[:, None]
    else:
        mean = agent.policy.normalizer.mean.numpy().reshape(space.shape)
        features = reference_features(agent, np.where(finite, observations, mean))  # (mean − mean) / std = 0
    parameters = {k: v.numpy() for k, v in agent.policy.head.named_parameters(
        agent.policy.head.distribution_parameters(agent.policy.network(features))).items()}
    return {"serving_default/action": reference_action(agent.action_space, parameters),
            "value/value": agent.value(features).numpy()[:, 0],
            **{f"distribution/{k}": v for k, v in parameters.items()}}


@pytest.mark.parametrize("name", CASES)
def test_non_finite_observations_are_refused_or_answered_as_documented(name, exports, loaded, tflite_files):
    """The SavedModel refuses NaN and ±inf; TFLite, where that check is dropped, reads them as the training mean."""
    item, model = exports[name], loaded[name]
    bad = with_non_finite_entries(item.observations)
    for signature in export.SIGNATURES:
        with pytest.raises(tf.errors.InvalidArgumentError, match="observation holds NaN or infinity"):
            call(model, signature, bad)
    with pytest.raises(ValueError, match=r"observation holds NaN or infinity \(row 0 of the batch\)"):
        export.litert_runner(tflite_files[name], "value")(bad)

    interpreter, space = Interpreter(model_path=tflite_files[name]), item.agent.action_space
    expected = documented_outputs(item.agent, bad)
    for key, reference in expected.items():
        signature, output = key.split("/")
        lite = interpreter.get_signature_runner(signature)(observation=bad)[output]
        assert np.all(np.isfinite(lite)), key
        assert_tflite_close(lite, reference, key)
    for signature in ("serving_default", "sample"):
        actions = interpreter.get_signature_runner(signature)(observation=bad)["action"]
        assert all(space.contains(a) for a in actions.astype(space.dtype)), (signature, actions)


def with_out_of_space_entries(space: gym.spaces.Discrete, observations: np.ndarray) -> np.ndarray:
    """A copy of Discrete ``observations`` [B] with start + n, start − 1 and start + 2.7 in rows 0-2
    (5, −1 and 2.7 for ``Discrete(5)``): not one of the space's values."""
    bad = observations.copy()
    bad[:3] = [space.start + space.n, space.start - 1, space.start + 2.7]
    return bad


def as_nan_outside(space: gym.spaces.Discrete, observations: np.ndarray) -> np.ndarray:
    """``observations`` with NaN where they are not one of the space's values (what the converted graphs read)."""
    inside = (observations == np.floor(observations)) & (observations >= space.start) & (
        observations < space.start + space.n)
    return np.where(inside, observations, np.nan)


def test_discrete_observations_outside_the_space_are_refused_or_answered_as_documented(exports, loaded, tflite_files):
    """Discrete(5, start=2): 7, 1 and 4.7 are refused as NaN is; TFLite, without the check, reads them as NaN."""
    item, model = exports["multidiscrete"], loaded["multidiscrete"]
    space = item.agent.observation_space
    bad = with_out_of_space_entries(space, item.observations)
    for signature in export.SIGNATURES:
        for row in range(3):
            with pytest.raises(tf.errors.InvalidArgumentError,
                               match=r"observation outside its Discrete space \(whole numbers 2 to 6\)"):
                call(model, signature, bad[row:row + 1])
        call(model, signature, bad[3:])  # the observations inside are answered
    error = rest(item.path, {"instances": bad[:1].tolist()})["error"]
    assert error.startswith("observation outside its Discrete space (whole numbers 2 to 6)")

    interpreter = Interpreter(model_path=tflite_files["multidiscrete"])
    for key, reference in documented_outputs(item.agent, as_nan_outside(space, bad)).items():
        signature, output = key.split("/")
        assert_tflite_close(interpreter.get_signature_runner(signature)(observation=bad)[output], reference, key)


def test_rest_predict_refuses_non_finite_observations(exports):
    item = exports["pendulum"]
    body = {"instances": with_non_finite_entries(item.observations).tolist()}  # NaN, Infinity: JSON extensions
    assert rest(item.path, body) == {"error": "observation holds NaN or infinity : Tensor had Inf and NaN values"}


@pytest.mark.parametrize("content, problem", [
    (b"{not json", r"is not valid JSON: Expecting property name"),
    (b"[1, 2]", r"must hold a JSON object, got list"),
    (b'"metadata"', r"must hold a JSON object, got str"),
    (b"\xff\xfe{}", r"is not UTF-8 text \(byte offset 0\)"),
    (b'{"env_id": 5}', r"'env_id' must be a string or null, got 5"),
    (b'{"observation_space": "Box"}', r"'observation_space' must be an object, got \"Box\""),
    (b'{"config": []}', r"'config' must be an object, got \[\]"),
    (b'{"config": {"env_kwargs": [1]}}', r"'config'.'env_kwargs' must be an object"),
])
def test_broken_metadata_is_named_by_read_metadata_and_the_cli(exports, tmp_path, capsys, content, problem):
    folder = tmp_path / "model" / "1"
    shutil.copytree(exports["cartpole"].path, folder)
    metadata = folder / "assets" / "metadata.json"
    metadata.write_bytes(content)
    with pytest.raises(ExportError, match=re.escape(str(metadata)) + ":? " + problem):
        export.read_metadata(str(tmp_path / "model"))
    assert cli.main(["evaluate", str(tmp_path / "model"), "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"trpo-tf: error: {metadata}")


LOAD_SCRIPT = f"""
import json, sys
import numpy as np
import tensorflow as tf

for job in json.loads(sys.argv[1]):
    policy = tf.saved_model.load(job["model"]).signatures["serving_default"]
    observations = tf.constant(np.load(job["observations"]))
    np.save(job["actions"], policy(observation=observations)["action"].numpy())
print(sorted(m for m in sys.modules if m.split(".")[0] in {ISOLATED_MODULES!r} and sys.modules[m]))
"""


def test_runs_with_tensorflow_alone_in_another_process(exports, tmp_path):
    """serving_default in a process where trpo_tf, TFP, Keras and gymnasium cannot be imported."""
    jobs = []
    for name, item in exports.items():
        np.save(tmp_path / f"{name}_obs.npy", item.observations)
        jobs.append({"model": item.path, "observations": str(tmp_path / f"{name}_obs.npy"),
                     "actions": str(tmp_path / f"{name}_actions.npy")})
    script = tmp_path / "load.py"
    script.write_text(LOAD_SCRIPT)
    stdout = isolated_python(str(script), json.dumps(jobs), cwd=str(tmp_path))
    assert stdout.strip().splitlines()[-1] == "[]"
    for name, item in exports.items():
        actions = np.load(tmp_path / f"{name}_actions.npy")
        np.testing.assert_allclose(actions, item.agent.predict(item.observations, deterministic=True), atol=1e-5)


def test_saved_model_cli_runs_serving_default(exports, tmp_path):
    item = exports["pendulum"]
    literal = json.dumps(item.observations.tolist())  # finite floats: also a Python literal
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run([cli, "run", "--dir", item.path, "--tag_set", "serve", "--signature_def",
                             "serving_default", "--input_exprs", f"observation={literal}",
                             "--outdir", str(tmp_path), "--overwrite"],
                            capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "action.npy"), item.agent.predict(item.observations), atol=1e-5)


def test_export_layout_versions_and_refusals(tmp_path):
    agent = TRPO(make_env("multibinary"), TINY, seed=5)  # no env id: no evaluation is run
    out = tmp_path / "model"
    os.makedirs(out / "notes")
    assert agent.export(str(out)) == str(out / "1")
    evaluation_env = make_env("multibinary")  # evaluated through the export, on an environment given
    assert agent.export(str(out), episodes=2, seed=3, env=evaluation_env,
                        command="trpo-tf export run out") == str(out / "2")
    assert agent.export(str(out), version=7) == str(out / "7")
    assert agent.export(str(out)) == str(out / "8")
    assert sorted(os.listdir(out)) == ["1", "2", "7", "8", "notes"]  # no staging folder left behind
    assert os.stat(out / "1").st_mode & 0o777 == 0o755  # readable by a server running as another user
    for version in ("1", "2", "7", "8"):
        assert tf.saved_model.contains_saved_model(str(out / version))
        assert os.path.isfile(out / version / "assets" / "metadata.json")
    with pytest.raises(FileExistsError, match="already exists"):
        agent.export(str(out), version=2)
    for bad in (-1, "3", True, 1.0):
        with pytest.raises(ValueError, match="non-negative integer"):
            agent.export(str(out), version=bad)
    metadata = export.read_metadata(str(out / "2"))
    expected = run_episodes(make_env("multibinary"), agent.predict, 2, 3)["returns"]  # the agent's own graph
    assert metadata["evaluation"]["returns"] == expected and metadata["evaluation"]["seed"] == 3
    assert metadata["evaluation"]["deterministic"] and metadata["evaluation"]["episodes"] == 2
    assert export.read_metadata(str(out / "1"))["evaluation"] is None
    assert metadata["command"] == "trpo-tf export run out"
    assert export.read_metadata(str(out))["command"] is None  # the model folder resolves to version 8
    with pytest.raises(ValueError, match="episodes must be a non-negative integer"):
        agent.export(str(out), episodes=-1)
    bias = agent.policy.network.layers[-1].bias
    bias.assign(np.full(bias.shape, np.nan, np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        agent.export(str(out))
    assert sorted(os.listdir(out)) == ["1", "2", "7", "8", "notes"]
    with pytest.raises(FileNotFoundError, match="no SavedModel"):
        export.read_metadata(str(tmp_path))


# --------------------------------------------------------------------------- metadata

def strict_json(path: str) -> dict:
    """Parse JSON refusing NaN and Infinity, which are not JSON."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    with open(path, encoding="utf-8") as file:
        return json.load(file, parse_constant=refuse)


@pytest.mark.parametrize("name", CASES)
def test_metadata_records_spaces_training_and_versions(name, exports):
    item = exports[name]
    agent = item.agent
    metadata = export.read_metadata(item.out_dir)
    assert metadata == strict_json(os.path.join(item.path, "assets", "metadata.json"))
    assert metadata["env_id"] == agent.env_id
    assert export.space_from_metadata(metadata["observation_space"]) == agent.observation_space
    assert export.space_from_metadata(metadata["action_space"]) == agent.action_space
    assert metadata["timesteps"] == agent.timesteps == 512
    assert TRPOConfig.from_dict(metadata["config"]) == agent.config
    assert metadata["command"] == f"test_export {name}"
    assert metadata["versions"]["tensorflow"] == tf.__version__
    assert metadata["versions"]["tensorflow_probability"] == tfp.__version__
    assert metadata["versions"]["keras"] == keras.__version__
    assert metadata["versions"]["gymnasium"] == gym.__version__
    assert metadata["versions"]["trpo_tf"] == trpo_tf.__version__
    action = metadata["signatures"]["serving_default"]["outputs"]["action"]
    assert action == {"dtype": "float32" if name == "pendulum" else "int32",
                      "shape": [None] + list(agent.action_space.shape)}
    assert metadata["signatures"]["value"]["inputs"]["observation"]["shape"] == [None] + list(agent.policy.encoder.shape)
    if agent.env_id is None:
        assert metadata["evaluation"] is None
    else:
        evaluation = metadata["evaluation"]
        assert evaluation["episodes"] == 10 and evaluation["deterministic"] is True
        assert evaluation["mean_return"] == pytest.approx(np.mean(evaluation["returns"]))
        assert evaluation["std_return"] == pytest.approx(np.std(evaluation["returns"]))
        # measured through the export's graph: the agent's own TensorFlow graph gives the same returns
        expected = reference_returns(agent, agent.env_id, 10, evaluation["seed"])
        np.testing.assert_allclose(evaluation["returns"], expected, rtol=1e-5)


@pytest.mark.parametrize("space", [
    gym.spaces.Box(np.array([-4.8, -np.inf], np.float32), np.array([4.8, np.inf], np.float32), dtype=np.float32),
    gym.spaces.Box(-1.0, 1.0, (2, 3), np.float64),
    gym.spaces.Box(0, 255, (4, 4, 3), np.uint8),
    gym.spaces.Discrete(5, start=-2),
    gym.spaces.MultiDiscrete([[2, 3], [4, 5]], start=[[0, 1], [-1, 2]]),
    gym.spaces.MultiBinary(4),
    gym.spaces.MultiBinary([2, 3]),
], ids=lambda space: type(space).__name__)
def test_space_metadata_round_trip(space):
    description = json.loads(json.dumps(export.space_to_metadata(space), allow_nan=False))
    rebuilt = export.space_from_metadata(description)
    assert rebuilt == space and rebuilt.dtype == space.dtype and rebuilt.shape == space.shape


def test_space_metadata_errors():
    with pytest.raises(ValueError, match="unknown space type"):
        export.space_from_metadata({"type": "Tuple"})
    with pytest.raises(ValueError, match="cannot describe"):
        export.space_to_metadata(gym.spaces.Text(5))


# --------------------------------------------------------------------------- TF Serving REST

def rest(path: str, body: dict) -> dict:
    return json.loads(export.rest_predict(path, json.dumps(body)))


def test_rest_predict_follows_the_tf_serving_contract(exports):
    pendulum, cartpole = exports["pendulum"], exports["cartpole"]
    instances = pendulum.observations.tolist()
    response = rest(pendulum.path, {"signature_name": "serving_default", "instances": instances})
    assert list(response) == ["predictions"]
    np.testing.assert_allclose(response["predictions"], pendulum.agent.predict(pendulum.observations), atol=1e-5)

    # Several outputs: one object per instance; named inputs in rows.
    response = rest(pendulum.out_dir, {"signature_name": "distribution",
                                       "instances": [{"observation": row} for row in instances]})
    expected = reference_parameters(pendulum.agent, pendulum.observations)
    assert len(response["predictions"]) == BATCH and set(response["predictions"][0]) == {"mean", "log_std"}
    np.testing.assert_allclose([p["mean"] for p in response["predictions"]], expected["mean"], atol=1e-5)
    np.testing.assert_allclose([p["log_std"] for p in response["predictions"]], expected["log_std"], atol=1e-5)

    # Columnar format, integer actions, the value signature.
    response = rest(cartpole.path, {"inputs": {"observation": cartpole.observations.tolist()}})
    assert response == {"outputs": cartpole.agent.predict(cartpole.observations).tolist()}
    response = rest(cartpole.path, {"signature_name": "value", "instances": cartpole.observations.tolist()})
    np.testing.assert_allclose(response["predictions"], reference_value(cartpole.agent, cartpole.observations),
                               atol=1e-5)

    errors = [
        ({"instances": [[0.1, 0.2]]}, "Shape of tensor observation \\[1,2\\]"),
        ({"instances": instances[0]}, "Shape of tensor observation \\[3\\]"),
        ({"signature_name": "act", "instances": instances}, "unknown signature_name 'act'"),
        ({"instances": instances, "inputs": instances}, "exactly one of"),
        ({"instances": [["a", 1.0, 2.0]]}, "could not convert"),
    ]
    for body, message in errors:
        response = rest(pendulum.path, body)
        assert list(response) == ["error"] and re.search(message, response["error"]), response
    assert "error" in json.loads(export.rest_predict(pendulum.path, "{not json"))


# --------------------------------------------------------------------------- TFLite / LiteRT

def tflite_operators(path: str) -> set[str]:
    """Builtin operator names used in any subgraph of a .tflite file."""
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        tf.lite.experimental.Analyzer.analyze(model_path=path)
    return set(re.findall(r"Op#\d+ (\w+)", text.getvalue()))


TFLITE_TOLERANCE = 1e-4  # README: |TFLite − SavedModel| ≤ 1e-4 · max(1, |SavedModel|)


def assert_tflite_close(lite: np.ndarray, reference: np.ndarray, what: str) -> None:
    """The README's promise for a TFLite output against the SavedModel's (or the reference's)."""
    reference = reference.astype(np.float64)
    excess = np.abs(lite.astype(np.float64) - reference) - TFLITE_TOLERANCE * np.maximum(1.0, np.abs(reference))
    assert np.all(excess <= 0), f"{what}: {np.max(excess):.3g} past the tolerance"


@pytest.mark.parametrize("name", CASES)
def test_tflite_matches_the_saved_model(name, exports, loaded, tflite_files):
    item, model = exports[name], loaded[name]
    interpreter = Interpreter(model_path=tflite_files[name])
    assert set(interpreter.get_signature_list()) == set(export.SIGNATURES)
    operators = tflite_operators(tflite_files[name])
    assert "FULLY_CONNECTED" in operators  # the listing works
    assert not operators & {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"}, operators
    many = random_observations(item.agent.observation_space, 2000, seed=10)
    for batch in (many, item.observations[:1]):  # the runner resizes the batch dimension
        for signature in export.DETERMINISTIC_SIGNATURES:
            lite = interpreter.get_signature_runner(signature)(observation=batch)
            reference = call(model, signature, batch)
            assert lite.keys() == reference.keys()
            for key in reference:
                assert lite[key].dtype == reference[key].dtype
                assert_tflite_close(lite[key], reference[key], f"{signature}/{key}")
    space = item.agent.action_space
    sampled = interpreter.get_signature_runner("sample")(observation=np.repeat(item.observations, 20, axis=0))
    actions = sampled["action"]
    assert actions.shape == (20 * BATCH,) + space.shape and np.all(np.isfinite(actions))
    assert all(space.contains(a) for a in actions.astype(space.dtype))
    assert len(np.unique(actions.reshape(len(actions), -1), axis=0)) > 1  # it does sample


@pytest.mark.parametrize("name", ["pendulum", "multidiscrete", "multibinary"])
def test_litert_runner_checks_what_litert_does_not(name, exports, loaded, tflite_files):
    """The bare LiteRT runner reshapes a wrong observation silently; litert_runner refuses it."""
    item = exports[name]
    run = export.litert_runner(tflite_files[name], "value")
    expected = call(loaded[name], "value", item.observations)["value"]
    assert_tflite_close(run(item.observations)["value"], expected, "value")
    flattened = item.observations.reshape(1, -1)  # the same numbers in the wrong shape
    for bad in (flattened, item.observations[0], item.observations.astype(np.float64)):
        with pytest.raises(ValueError, match="does not fit"):
            run(bad)
    with pytest.raises(ValueError, match="unknown signature"):
        export.litert_runner(tflite_files[name], "act")


def test_to_tflite_signature_selection(exports, tmp_path):
    path = export.to_tflite(exports["cartpole"].path, str(tmp_path / "sub" / "act.tflite"),
                            signatures=["serving_default"])
    assert list(Interpreter(model_path=path).get_signature_list()) == ["serving_default"]
    with pytest.raises(ValueError, match="unknown signature"):
        export.to_tflite(exports["cartpole"].path, str(tmp_path / "x.tflite"), signatures=["act"])


# --------------------------------------------------------------------------- examples

def episode_returns(stdout: str) -> list[float]:
    return [float(value) for value in re.findall(r"^episode \d+: return (\S+)$", stdout, flags=re.M)]


def test_serve_example_drives_the_environment_with_tensorflow_alone(exports, tmp_path):
    item = exports["cartpole"]
    script = os.path.join(REPO, "examples", "serve_savedmodel.py")
    stdout = isolated_python(script, item.out_dir, "--env", "CartPole-v1", "--episodes", "2", "--seed", "3",
                             blocked=("trpo_tf", "tensorflow_probability", "keras"), cwd=str(tmp_path))
    assert episode_returns(stdout) == reference_returns(item.agent, "CartPole-v1", 2, seed=3)


def test_tflite_example_drives_the_environment_with_litert_alone(exports, tflite_files, tmp_path):
    item = exports["cartpole"]
    script = os.path.join(REPO, "examples", "run_tflite.py")
    stdout = isolated_python(script, tflite_files["cartpole"], "--env", "CartPole-v1", "--episodes", "2",
                             "--seed", "3", blocked=("trpo_tf", "tensorflow", "tensorflow_probability", "keras"),
                             cwd=str(tmp_path))
    assert episode_returns(stdout) == reference_returns(item.agent, "CartPole-v1", 2, seed=3)
