"""ONNX export: every signature, run by onnxruntime, answers what the SavedModel answers.

The four tiny agents of test_export cover every action head (Gaussian, Categorical,
independent Categoricals, Bernoullis) and both observation encoders (Box, Discrete). Each is
untrained (training does not change the graph) but given normalizer statistics far from
(0, 1) and a log-std other than 0, exported, and converted with ``trpo_tf.export.to_onnx``. The deterministic signatures are compared with the
SavedModel loaded by ``tf.saved_model.load``; the stochastic ``sample`` draws with ONNX's own
random operators, so its draws are compared in distribution with the parameters the
SavedModel's ``distribution`` signature gives.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os

import gymnasium as gym
import numpy as np
import onnx
import onnxruntime
import pytest
import tensorflow as tf

from trpo_tf import TRPO, cli, export
from trpo_tf.errors import InputError, MissingDependencyError

from test_export import (BATCH, CASES, REPO, TINY, as_nan_outside, call, documented_outputs, episode_returns,
                         isolated_python, make_env, random_observations, reference_returns, with_out_of_space_entries)

TOLERANCE = 1e-5


@dataclasses.dataclass
class Converted:
    agent: TRPO
    path: str  # the export's version folder
    saved_model: tf.Module
    onnx_files: dict[str, str]
    observations: np.ndarray  # [BATCH, *obs_shape] random raw observations


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, Converted]:
    """Each case with random normalizer statistics (and log-std), exported and converted to ONNX."""
    made = {}
    for i, name in enumerate(CASES):
        agent = TRPO(make_env(name), TINY, seed=i)
        rng, normalizer = np.random.default_rng(i), agent.policy.normalizer
        normalizer.mean.assign(rng.normal(0.0, 3.0, normalizer.dim).astype(np.float32))
        normalizer.var.assign(rng.uniform(0.5, 4.0, normalizer.dim).astype(np.float32))
        if hasattr(agent.policy.head, "log_std"):
            agent.policy.head.log_std.assign(rng.uniform(-1.0, 0.5, agent.policy.head.log_std.shape).astype(np.float32))
        path = agent.export(str(tmp_path_factory.mktemp("exports") / name))
        files = export.to_onnx(path, str(tmp_path_factory.mktemp("onnx") / name))
        made[name] = Converted(agent, path, tf.saved_model.load(path), files,
                               random_observations(agent.observation_space, BATCH, seed=10 + i))
    return made


def run_onnx(path: str, observations: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs by name of the .onnx file at ``path`` under onnxruntime."""
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, {export.INPUT_NAME: observations})))


@pytest.mark.parametrize("name", CASES)
def test_deterministic_signatures_match_the_saved_model(name, converted):
    item = converted[name]
    assert sorted(item.onnx_files) == sorted(export.SIGNATURES)
    assert all(os.path.basename(path) == f"{key}.onnx" for key, path in item.onnx_files.items())
    for batch in (item.observations, item.observations[:1]):  # the batch dimension is dynamic
        for signature in export.DETERMINISTIC_SIGNATURES:
            ours, reference = run_onnx(item.onnx_files[signature], batch), call(item.saved_model, signature, batch)
            assert ours.keys() == reference.keys(), signature
            for key in reference:
                assert ours[key].dtype == reference[key].dtype and ours[key].shape == reference[key].shape
                np.testing.assert_allclose(ours[key], reference[key], rtol=TOLERANCE, atol=TOLERANCE,
                                           err_msg=f"{signature}/{key}")


def test_discrete_observations_outside_the_space_read_as_the_mean_one_hot(converted):
    """ONNX has no CheckNumerics: 7, 1 and 4.7 for Discrete(5, start=2) are answered as a NaN observation is."""
    item = converted["multidiscrete"]
    space = item.agent.observation_space
    bad = with_out_of_space_entries(space, item.observations)
    for key, reference in documented_outputs(item.agent, as_nan_outside(space, bad)).items():
        signature, output = key.split("/")
        np.testing.assert_allclose(run_onnx(item.onnx_files[signature], bad)[output], reference, rtol=TOLERANCE,
                                   atol=TOLERANCE, err_msg=key)


@pytest.mark.parametrize("name", CASES)
def test_sample_draws_from_the_saved_models_distribution(name, converted):
    """4000 draws at one observation: Gaussian quantiles and the frequencies of discrete actions
    are those of the SavedModel's distribution parameters."""
    item, draws = converted[name], 4000
    space = item.agent.action_space
    one = item.observations[:1]
    actions = run_onnx(item.onnx_files["sample"], np.repeat(one, draws, axis=0))["action"]
    assert actions.shape == (draws,) + space.shape
    assert actions.dtype == call(item.saved_model, "sample", one)["action"].dtype
    assert all(space.contains(a) for a in actions[:200].astype(space.dtype))
    parameters = {key: value[0] for key, value in call(item.saved_model, "distribution", one).items()}
    tolerance = 4.5 / np.sqrt(draws)  # 4.5 standard errors of a mean of unit variance (frequencies: less)

    if isinstance(space, gym.spaces.Box):  # P(action <= mean + z std) = Phi(z) wherever clipping does not reach
        mean, std = parameters["mean"].reshape(-1), np.exp(parameters["log_std"]).reshape(-1)
        flat, low, high = actions.reshape(draws, -1), space.low.reshape(-1), space.high.reshape(-1)
        checked = 0
        for z, probability in ((-1.0, 0.158655), (0.0, 0.5), (1.0, 0.841345)):
            quantile = mean + z * std
            inside = (low < quantile) & (quantile < high)
            checked += int(inside.sum())
            frequencies = np.mean(flat <= quantile, axis=0)
            assert np.all(np.abs(frequencies - probability)[inside] < tolerance / 2)
        assert checked >= len(mean)
    elif isinstance(space, gym.spaces.MultiBinary):
        probabilities = 1.0 / (1.0 + np.exp(-parameters["logits"]))
        assert np.max(np.abs(actions.mean(axis=0) - probabilities)) < tolerance / 2
    else:
        logits = parameters["logits"].reshape(-1, parameters["logits"].shape[-1])  # [K, n]
        probabilities = np.exp(logits - logits.max(-1, keepdims=True))
        probabilities /= probabilities.sum(-1, keepdims=True)
        chosen = actions.reshape(draws, -1) - np.asarray(space.start).reshape(-1)  # [draws, K], zero-based
        for k in range(len(logits)):
            frequencies = np.bincount(chosen[:, k], minlength=logits.shape[-1]) / draws
            assert np.max(np.abs(frequencies - probabilities[k])) < tolerance / 2


def test_files_hold_only_onnx_operators_and_random_ones_only_in_sample(converted):
    for item in converted.values():
        for signature, path in item.onnx_files.items():
            model = onnx.load(path)
            onnx.checker.check_model(model)
            operators = {node.op_type for node in model.graph.node}
            assert all(onnx.defs.has(node.op_type, node.domain) for node in model.graph.node), operators
            assert [i.name for i in model.graph.input] == [export.INPUT_NAME]
            random = operators & {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                                  "Multinomial"}
            assert bool(random) == (signature == "sample"), (signature, operators)


def test_unknown_signatures_unconvertible_ops_and_dropped_checks_are_named(converted, tmp_path):
    saved_model = os.path.join(str(tmp_path), "strings")
    module = tf.Module()
    module.value = tf.function(lambda observation: {"value": tf.cast(tf.strings.length(
        tf.strings.as_string(observation[:, 0])), tf.float32)},
        input_signature=[tf.TensorSpec([None, 2], tf.float32, name=export.INPUT_NAME)])
    tf.saved_model.save(module, saved_model, signatures={"value": module.value})
    with pytest.raises(RuntimeError, match="could not convert the TensorFlow op.s. StringLength"):
        export.to_onnx(saved_model, str(tmp_path / "strings-onnx"))
    checked = os.path.join(str(tmp_path), "checked")
    module = tf.Module()
    module.value = tf.function(lambda observation: {"value": tf.debugging.check_numerics(observation, "bad")[:, 0]},
                               input_signature=[tf.TensorSpec([None, 2], tf.float32, name=export.INPUT_NAME)])
    tf.saved_model.save(module, checked, signatures={"value": module.value})
    with pytest.warns(RuntimeWarning, match="no operator for CheckNumerics"):
        files = export.to_onnx(checked, str(tmp_path / "checked-onnx"))
    nan = np.array([[np.nan, 1.0]], np.float32)
    assert np.isnan(run_onnx(files["value"], nan)["value"]).all()  # what the warning says: no check in ONNX
    with pytest.raises(InputError, match=r"unknown signature.*'act'"):
        export.to_onnx(converted["cartpole"].path, str(tmp_path / "act"), signatures=["act"])


def test_missing_extra_is_one_line_naming_the_install_command(converted, tmp_path, monkeypatch, capsys):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "tf2onnx" else
                        find_spec(name, *args))
    with pytest.raises(MissingDependencyError, match=r"needs tf2onnx.*pip install -e '\.\[onnx\]'"):
        export.to_onnx(converted["cartpole"].path, str(tmp_path / "onnx"))
    run_dir, out_dir = str(tmp_path / "run"), str(tmp_path / "cli-export")
    converted["cartpole"].agent.save(run_dir)
    assert cli.main(["export", run_dir, out_dir, "--onnx"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "pip install -e '.[onnx]'" in error, error
    assert not os.path.exists(out_dir)  # refused before anything was written


def test_cli_export_onnx_and_the_example_drive_the_environment_with_onnxruntime_alone(converted, tmp_path):
    agent = converted["cartpole"].agent
    run_dir, out_dir = str(tmp_path / "run"), str(tmp_path / "exported")
    agent.save(run_dir)
    assert cli.main(["export", run_dir, out_dir, "--onnx", "--eval-episodes", "1"]) == 0
    assert sorted(os.listdir(os.path.join(out_dir, "1", "onnx"))) == sorted(f"{s}.onnx" for s in export.SIGNATURES)
    script = os.path.join(REPO, "examples", "run_onnx.py")
    stdout = isolated_python(script, out_dir, "--episodes", "2", "--seed", "3",
                             blocked=("trpo_tf", "tensorflow", "tensorflow_probability", "keras"), cwd=str(tmp_path))
    assert episode_returns(stdout) == reference_returns(agent, "CartPole-v1", 2, seed=3)


@pytest.mark.parametrize("name", ["pendulum", "multidiscrete", "multibinary"])
def test_onnxruntime_refuses_observations_of_another_shape_or_dtype(name, converted):
    """The SavedModel's EnsureShape becomes a no-op in ONNX; onnxruntime checks the declared input instead."""
    item = converted[name]
    session = onnxruntime.InferenceSession(item.onnx_files["serving_default"], providers=["CPUExecutionProvider"])
    observations = item.observations
    for bad in (observations.reshape(1, -1), np.asarray(observations[0]), observations[None],
                observations.astype(np.float64)):
        with pytest.raises(onnxruntime.capi.onnxruntime_pybind11_state.InvalidArgument):
            session.run(None, {export.INPUT_NAME: bad})
