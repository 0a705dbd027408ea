"""The Python API as SB3 users expect it: learn(n) adds n steps, runs logged to a directory, presets."""

import csv
import hashlib
import json
import os

import numpy as np
import pytest
import yaml

from trpo_tf import TRPO, TRPOConfig, checkpoint, cli
from trpo_tf.errors import ConfigError, InputError, RunDirError

TINY = TRPOConfig(steps_per_iteration=128, policy_hidden=(8,), value_hidden=(8,), value_epochs=1)
PRESETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "trpo_tf", "presets")


def _without_timing(history):
    return [{k: v for k, v in entry.items() if not k.endswith("_seconds") and k != "fps"} for entry in history]


def _tree(directory) -> dict[str, str]:
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            with open(os.path.join(root, name), "rb") as handle:
                files[os.path.relpath(os.path.join(root, name), directory)] = hashlib.sha256(handle.read()).hexdigest()
    return files


def test_learn_adds_steps_and_accepts_any_whole_number():
    with TRPO("CartPole-v1", TINY, seed=3) as in_parts, TRPO("CartPole-v1", TINY, seed=3) as at_once:
        in_parts.learn(128).learn(np.int64(128)).learn(1.28e2)
        at_once.learn(384)
        assert in_parts.timesteps == 384
        assert [e["timesteps"] for e in in_parts.history] == [128, 256, 384]
        assert _without_timing(in_parts.history) == _without_timing(at_once.history)
        in_parts.learn(1)  # whole iterations: one more
        assert in_parts.timesteps == 512
        in_parts.learn(0)
        assert in_parts.timesteps == 512

        weights = [w.copy() for w in in_parts.policy.get_weights()]
        in_parts.learn(128, reset_num_timesteps=True)  # a fresh count; the weights carry on
        assert in_parts.timesteps == 128 and [e["iteration"] for e in in_parts.history] == [1]
        assert any(not np.array_equal(a, b) for a, b in zip(weights, in_parts.policy.get_weights()))


def test_max_timesteps_variable_caps_every_learn_call(monkeypatch):
    monkeypatch.setenv("TRPO_TF_MAX_TIMESTEPS", "256")
    with TRPO("CartPole-v1", TINY, seed=3) as agent:
        with pytest.warns(UserWarning, match="TRPO_TF_MAX_TIMESTEPS=256: training 256 of the 1,000 steps asked for"):
            agent.learn(1000)
        assert agent.timesteps == 256 and len(agent.history) == 2
        agent.learn(200)  # under the cap: no cut, whole iterations as always
        assert agent.timesteps == 512
        monkeypatch.setenv("TRPO_TF_MAX_TIMESTEPS", "many")
        with pytest.raises(InputError, match="TRPO_TF_MAX_TIMESTEPS='many'"):
            agent.learn(128)
        monkeypatch.setenv("TRPO_TF_MAX_TIMESTEPS", "")  # empty: no cap
        agent.learn(384)
        assert agent.timesteps == 896


@pytest.mark.parametrize("steps", [1.5, -1, True, "100", float("nan"), float("inf"), None])
def test_learn_refuses_what_is_not_a_whole_number_of_steps(steps):
    with TRPO("CartPole-v1", TINY, seed=0) as agent:
        with pytest.raises(InputError, match="total_timesteps must be a non-negative whole number"):
            agent.learn(steps)
        assert agent.timesteps == 0


def test_learn_with_a_log_dir_writes_a_run_the_command_line_reads(tmp_path, capsys):
    def add_square(entry):  # a callback runs before the loggers: keys it adds are logged
        entry["iteration_squared"] = entry["iteration"] ** 2

    run = str(tmp_path / "run")
    with TRPO("CartPole-v1", TINY, seed=2) as agent:
        agent.learn(256, callback=add_square, log_dir=run, progress_bar=True, checkpoint_every=1)
        assert "256/256" in capsys.readouterr().err  # the bar reached the end
        agent.learn(128, log_dir=run)
        history = agent.history
    with open(os.path.join(run, "run.json"), encoding="utf-8") as handle:
        info = json.load(handle)
    assert (info["env_id"], info["seed"], info["total_timesteps"]) == ("CartPole-v1", 2, 384)
    with open(os.path.join(run, "config.yaml"), encoding="utf-8") as handle:
        assert TRPOConfig.from_dict(yaml.safe_load(handle)) == TINY
    with open(os.path.join(run, "progress.csv"), encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["timesteps"]) for row in rows] == [128, 256, 384]
    assert [row["iteration_squared"] for row in rows] == ["1", "4", ""]
    assert [float(row["kl"]) for row in rows] == pytest.approx([e["kl"] for e in history], rel=1e-12)
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(run))
    assert os.path.basename(checkpoint.latest(run)) == "ckpt-3"  # 1, 2 (every iteration), 3 (at the end)

    assert cli.main(["plot", run, "-o", str(tmp_path / "curve.png")]) == 0
    assert os.path.getsize(tmp_path / "curve.png") > 0
    assert cli.main(["evaluate", run, "--episodes", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["episodes"] == 1
    assert cli.main(["export", run, str(tmp_path / "exported")]) == 0
    assert os.path.isfile(tmp_path / "exported" / "1" / "saved_model.pb")


def test_a_log_dir_of_another_run_is_refused_and_a_resumed_agent_continues_it(tmp_path):
    run = str(tmp_path / "run")
    with TRPO("CartPole-v1", TINY, seed=2) as first:
        first.learn(128, log_dir=run)
    before = _tree(run)
    with TRPO("CartPole-v1", TINY, seed=2) as second:
        with pytest.raises(RunDirError, match="already holds a run .run.json, progress.csv, checkpoints/ckpt-1.") \
                as refused:
            second.learn(128, log_dir=run)
        # Python's words, not the command line's: the command line puts its flags in their place.
        assert "TRPO.load(run_dir, resume=True)" in str(refused.value) and "--" not in str(refused.value)
        assert "continue it with --resume, or choose another run directory (--logdir)" in \
            refused.value.for_command_line()
        with pytest.raises(InputError, match="reset_num_timesteps starts a new count"):
            first.learn(128, log_dir=run, reset_num_timesteps=True)
    assert _tree(run) == before

    with TRPO.load(run, resume=True) as resumed:
        resumed.learn(128, log_dir=run)
    with open(os.path.join(run, "progress.csv"), encoding="utf-8") as handle:
        assert [int(row["iteration"]) for row in csv.DictReader(handle)] == [1, 2]


@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "CartPole-v1"])
def test_preset_is_the_yaml_file_with_changes_applied(env_id):
    with open(os.path.join(PRESETS, f"{env_id}.yaml"), encoding="utf-8") as handle:
        written = yaml.safe_load(handle)
    written.pop("timesteps", None)
    config = TRPOConfig.preset(env_id, gamma=0.9).to_dict()
    expected = {**TRPOConfig().to_dict(), **written, "gamma": 0.9}
    for key, value in expected.items():  # safe_load reads YAML 1.1: "1e-3" stays a string
        assert config[key] == (_number(value) if isinstance(value, str) else value), key


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text

def test_a_missing_preset_names_those_that_exist():
    with pytest.raises(ConfigError, match="no preset for 'Nope-v0'; presets exist for .*CartPole-v1"):
        TRPOConfig.preset("Nope-v0")
