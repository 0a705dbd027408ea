"""The ``trpo-tf`` command, end to end through subprocesses, plus its presets and error messages."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from trpo_tf import TRPOConfig, checkpoint, cli, presets
from trpo_tf.policies.head import action_head
from trpo_tf.sampling import check_env_id, make_env

from killing import kill_9_after_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIMING_COLUMNS = {"fps", "sampling_seconds", "advantage_seconds", "policy_step_seconds", "value_fit_seconds"}


def _command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m trpo_tf.cli``."""
    script = os.path.join(os.path.dirname(sys.executable), "trpo-tf")
    return [script] if os.path.isfile(script) else [sys.executable, "-m", "trpo_tf.cli"]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")


def trpo_tf(*args: str, cwd, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(_command() + list(args), cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def _our_stderr(process: subprocess.CompletedProcess) -> list[str]:
    """stderr lines written by trpo-tf itself (TensorFlow's C++ start-up log lines aside)."""
    return [line for line in process.stderr.splitlines() if line.startswith("trpo-tf")]


def _read_csv(path: str) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def trained(workdir):
    """``trpo-tf train CartPole-v1 --timesteps 4096 --set steps_per_iteration=1024 --quiet``."""
    process = trpo_tf("train", "CartPole-v1", "--timesteps", "4096", "--set", "steps_per_iteration=1024",
                      "--quiet", "--export", "exported", cwd=workdir)
    assert process.returncode == 0, process.stderr
    return workdir, process


def test_train_quiet_prints_one_summary_line_and_records_the_run(trained):
    workdir, process = trained
    run = workdir / "runs" / "CartPole-v1-seed0"
    lines = process.stdout.strip().splitlines()
    assert len(lines) == 1, process.stdout
    assert "4,096 timesteps" in lines[0] and "run: runs/CartPole-v1-seed0" in lines[0]
    assert "export: exported/1" in lines[0]
    assert not _our_stderr(process) and "Traceback" not in process.stderr

    info = json.loads((run / "run.json").read_text())
    assert info["env_id"] == "CartPole-v1" and info["seed"] == 0 and info["total_timesteps"] == 4096
    assert info["command"] == ("trpo-tf train CartPole-v1 --timesteps 4096 --set steps_per_iteration=1024 "
                               "--quiet --export exported")
    preset_fields, _ = presets.load("CartPole-v1")
    config = checkpoint.read_config(str(run))
    assert config == TRPOConfig.from_dict({**preset_fields, "steps_per_iteration": 1024})
    rows = _read_csv(str(run / "progress.csv"))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]
    assert [int(r["timesteps"]) for r in rows] == [1024, 2048, 3072, 4096]
    assert {"episode_return_mean", "kl", "entropy", "fps"} <= set(rows[0])
    assert checkpoint.latest(str(run)).endswith("ckpt-4")

    from trpo_tf.monitor import read_scalars
    scalars = read_scalars(str(run))
    assert [step for step, _ in scalars["trpo/kl"]] == [1024, 2048, 3072, 4096]
    assert scalars["trpo/kl"][0][1] == pytest.approx(float(rows[0]["kl"]))
    assert {"trpo/episode_return_mean", "trpo/value_loss", "trpo/fps"} <= set(scalars)


def test_evaluate_json_on_run_dir_and_saved_model(trained):
    workdir, _ = trained
    for path in ("runs/CartPole-v1-seed0", "exported", "exported/1"):
        process = trpo_tf("evaluate", path, "--env", "CartPole-v1", "--episodes", "3", "--json", cwd=workdir)
        assert process.returncode == 0, process.stderr
        result = json.loads(process.stdout)
        assert set(result) == {"mean_return", "std_return", "episodes"}
        assert result["episodes"] == 3 and result["mean_return"] >= 8  # CartPole: at least 8 steps
    metadata = json.loads((workdir / "exported" / "1" / "assets" / "metadata.json").read_text())
    assert metadata["env_id"] == "CartPole-v1" and metadata["timesteps"] == 4096
    assert metadata["command"].startswith("trpo-tf train CartPole-v1")


def test_evaluate_of_an_export_reproduces_the_evaluation_its_metadata_records(trained):
    """The number shipped with a SavedModel is the SavedModel's: measured through its serving_default graph."""
    workdir, _ = trained
    recorded = json.loads((workdir / "exported" / "1" / "assets" / "metadata.json").read_text())["evaluation"]
    assert recorded["episodes"] == 10 and recorded["seed"] == 10_000 and recorded["deterministic"]
    process = trpo_tf("evaluate", "exported", "--episodes", str(recorded["episodes"]), "--seed",
                      str(recorded["seed"]), "--json", cwd=workdir)
    assert process.returncode == 0, process.stderr
    result = json.loads(process.stdout)
    assert result["mean_return"] == recorded["mean_return"] and result["std_return"] == recorded["std_return"]
    assert recorded["mean_return"] == np.mean(recorded["returns"])


def test_evaluate_refuses_an_environment_with_other_spaces(trained):
    workdir, _ = trained
    process = trpo_tf("evaluate", "exported", "--env", "Pendulum-v1", cwd=workdir)
    assert process.returncode == 2
    [line] = _our_stderr(process)
    assert "Pendulum-v1 does not match the policy" in line and "observation space Box(3,)" in line
    assert "Box(4,)" in line and "Traceback" not in process.stderr


def test_env_kwargs_are_recorded_and_used_by_evaluate(tmp_path):
    """HalfCheetah with its x position observed has 18 observations instead of 17: evaluating
    the run and the export without --env works only if both rebuild it with the kwargs."""
    process = trpo_tf("train", "HalfCheetah-v5", "--timesteps", "512", "--quiet", "--export", "exported",
                      "--eval-episodes", "1", "--set", "steps_per_iteration=512", "--set",
                      "env_kwargs={exclude_current_positions_from_observation: false}", cwd=tmp_path)
    assert process.returncode == 0, process.stderr
    metadata = json.loads((tmp_path / "exported" / "1" / "assets" / "metadata.json").read_text())
    assert metadata["config"]["env_kwargs"] == {"exclude_current_positions_from_observation": False}
    assert metadata["observation_space"]["shape"] == [18]
    for path in ("runs/HalfCheetah-v5-seed0", "exported"):
        process = trpo_tf("evaluate", path, "--episodes", "1", "--json", cwd=tmp_path)
        assert process.returncode == 0, process.stderr
        assert json.loads(process.stdout)["episodes"] == 1


def test_plot_writes_a_png(trained):
    workdir, _ = trained
    run = workdir / "runs" / "CartPole-v1-seed0"
    shutil.copytree(run, workdir / "runs" / "CartPole-v1-seed1")  # a second "seed" → mean and band
    process = trpo_tf("plot", "runs", "-o", "curves.png", cwd=workdir)
    assert process.returncode == 0, process.stderr
    data = (workdir / "curves.png").read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5000
    shutil.rmtree(workdir / "runs" / "CartPole-v1-seed1")


def test_export_with_tflite(trained):
    workdir, _ = trained
    process = trpo_tf("export", "runs/CartPole-v1-seed0", "exports2", "--tflite", "--eval-episodes", "2",
                      cwd=workdir)
    assert process.returncode == 0, process.stderr
    version = workdir / "exports2" / "1"
    assert (version / "saved_model.pb").is_file() and (version / "assets" / "metadata.json").is_file()
    assert (version / "model.tflite").stat().st_size > 1000
    assert "exports2/1" in process.stdout and "model.tflite" in process.stdout


@pytest.mark.parametrize("damaged", ["saved_model.pb", "variables/variables.data-00000-of-00001",
                                     "variables/variables.index"])
def test_evaluating_a_truncated_export_names_the_file_in_one_line(trained, tmp_path, capsys, damaged):
    workdir, _ = trained
    copy = shutil.copytree(workdir / "exported" / "1", tmp_path / "exported" / "1")
    data = (copy / damaged).read_bytes()
    (copy / damaged).write_bytes(data[: len(data) // 2])
    assert cli.main(["evaluate", str(tmp_path / "exported"), "--episodes", "1"]) == 2
    named = copy / ("saved_model.pb" if damaged == "saved_model.pb" else "variables")
    err = capsys.readouterr().err
    assert err.startswith(f"trpo-tf: error: {named} is damaged or not part of a SavedModel, so TensorFlow cannot "
                          "load it (") and err.count("\n") == 1


def test_export_under_a_file_is_refused_in_one_line_naming_it(trained, tmp_path, capsys):
    workdir, _ = trained
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    for out in (tmp_path / "notes.txt" / "exported", tmp_path / "notes.txt"):
        assert cli.main(["export", str(workdir / "runs" / "CartPole-v1-seed0"), str(out)]) == 2
        assert capsys.readouterr().err == (f"trpo-tf: error: cannot export to {out}: {tmp_path / 'notes.txt'} "
                                           f"exists and is not a directory\n")
    assert os.listdir(tmp_path) == ["notes.txt"]
    assert cli.main(["train", "CartPole-v1", "--logdir", str(tmp_path / "run"), "--export",
                     str(tmp_path / "notes.txt" / "exported")]) == 2  # before training, not after
    assert "notes.txt exists and is not a directory" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_kill_9_then_resume_continues_from_the_checkpoint(workdir):
    """SIGKILL a training run after a checkpoint, resume it, and find every iteration exactly once."""
    steps = 512
    args = ["train", "CartPole-v1", "--set", f"steps_per_iteration={steps}", "--set", "value_epochs=2",
            "--logdir", "killed", "--checkpoint-every", "5", "--seed", "7"]
    process = subprocess.Popen(_command() + args + ["--timesteps", str(300 * steps), "--quiet"], cwd=workdir,
                               env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run = str(workdir / "killed")
    kill_9_after_checkpoint(process, run, iteration=5, delay=0.12)
    before = [row for row in _read_csv(os.path.join(run, "progress.csv")) if None not in row.values()]
    resumed_from = checkpoint.iteration_of(checkpoint.latest(run))
    assert len(before) >= resumed_from

    final = resumed_from + 4
    process = trpo_tf(*args, "--resume", "--timesteps", str(final * steps), cwd=workdir)
    assert process.returncode == 0, process.stderr
    assert f"resuming killed from iteration {resumed_from} at {resumed_from * steps:,} timesteps" in process.stdout
    assert f"{final * steps:,} timesteps, {final} iterations" in process.stdout

    rows = _read_csv(os.path.join(run, "progress.csv"))
    assert [int(r["iteration"]) for r in rows] == list(range(1, final + 1))
    assert [int(r["timesteps"]) for r in rows] == [steps * i for i in range(1, final + 1)]
    # The resumed process repeats what the killed one did after the checkpoint, exactly.
    for old, new in zip(before, rows):
        assert {k: v for k, v in old.items() if k not in TIMING_COLUMNS} == \
               {k: v for k, v in new.items() if k not in TIMING_COLUMNS}
    assert checkpoint.latest(run).endswith(f"ckpt-{final}")
    info = json.loads(open(os.path.join(run, "run.json")).read())
    assert info["total_timesteps"] == final * steps and len(info["resumed"]) == 1


def test_csv_logger_replaces_rows_after_the_checkpoint(tmp_path):
    from trpo_tf.monitor import CSVLogger
    path = str(tmp_path / "progress.csv")
    history = [{"iteration": i, "timesteps": 10 * i, "kl": 0.5 / i} for i in (1, 2, 3)]
    logger = CSVLogger(path)
    for entry in history:
        logger(entry)
    logger.close()
    logger = CSVLogger(path, history[:2])  # resumed from the checkpoint of iteration 2
    logger({"iteration": 3, "timesteps": 30, "kl": 0.125})
    logger.close()
    rows = _read_csv(path)
    assert [(r["iteration"], r["kl"]) for r in rows] == [("1", "0.5"), ("2", "0.25"), ("3", "0.125")]


def _snapshot(directory) -> dict[str, str]:
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                files[os.path.relpath(path, directory)] = hashlib.sha256(handle.read()).hexdigest()
    return files


def test_resuming_a_corrupted_or_missing_run_says_so_and_touches_nothing(trained, tmp_path, capsys):
    workdir, _ = trained
    run = tmp_path / "corrupted"
    shutil.copytree(workdir / "runs" / "CartPole-v1-seed0", run)
    data = [p for p in (run / "checkpoints").iterdir() if p.name.startswith("ckpt-4.data")][0]
    data.write_bytes(data.read_bytes()[:64])
    before = _snapshot(run)

    process = trpo_tf("train", "CartPole-v1", "--resume", "--logdir", str(run), "--quiet", cwd=tmp_path)
    assert process.returncode == 2 and "Traceback" not in process.stderr
    [line] = _our_stderr(process)
    assert line.startswith("trpo-tf: error: checkpoint ") and "ckpt-4 cannot be restored" in line
    assert _snapshot(run) == before and process.stdout == ""

    assert cli.main(["train", "CartPole-v1", "--resume", "--logdir", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip() == f"trpo-tf: error: no run directory at {tmp_path / 'nowhere'}"
    assert not (tmp_path / "nowhere").exists()

    (run / "run.json").write_text("{")
    before = _snapshot(run)
    assert cli.main(["train", "CartPole-v1", "--resume", "--logdir", str(run)]) == 2
    assert "run.json is unreadable or corrupted" in capsys.readouterr().err
    assert _snapshot(run) == before


def test_a_new_run_refuses_a_directory_with_checkpoints(trained, capsys):
    workdir, _ = trained
    run = str(workdir / "runs" / "CartPole-v1-seed0")
    assert cli.main(["train", "CartPole-v1", "--logdir", run, "--quiet"]) == 2
    assert ("already holds a run (run.json, progress.csv, checkpoints/ckpt-4); continue it with --resume"
            in capsys.readouterr().err)
    assert cli.main(["train", "CartPole-v1", "--logdir", run, "--resume", "--set", "steps_per_iteration=1024",
                     "--set", "max_kl=0.5"]) == 2
    assert ("--set would change the config of the run being resumed: max_kl 0.5 (recorded: 0.01); a run"
            in capsys.readouterr().err)


def test_quiet_keeps_third_party_start_up_lines_out(tmp_path):
    """Ray logs its cluster's start-up (an authentication token, "Started a local Ray instance") as it starts."""
    environment = {key: value for key, value in _env().items() if key != "TF_CPP_MIN_LOG_LEVEL"}  # a user's
    process = subprocess.run(_command() + ["train", "CartPole-v1", "--workers", "2", "--ray", "--timesteps", "64",
                                           "--set", "steps_per_iteration=64", "--quiet"],
                             cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    assert process.stderr == "" and len(process.stdout.splitlines()) == 1


def test_unknown_set_key_suggests_the_closest_and_lists_the_valid_keys(tmp_path):
    process = trpo_tf("train", "CartPole-v1", "--set", "max_kll=0.02", cwd=tmp_path)
    assert process.returncode == 2 and "Traceback" not in process.stderr
    [line] = _our_stderr(process)
    assert line.startswith("trpo-tf: error: --set max_kll=0.02: unknown TRPOConfig field max_kll (did you mean "
                           "max_kl?); valid fields:")
    from trpo_tf.config import field_names
    assert all(name in line for name in field_names())
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "CartPol-v1"], "unknown environment id 'CartPol-v1'; did you mean CartPole-v1"),
    (["train", "CartPole-v1", "--set", "max_kl=-1"], "TRPOConfig.max_kl must be a number in (0.0, inf)"),
    (["train", "CartPole-v1", "--set", "max_kl"], "--set expects KEY=VALUE, got 'max_kl'"),
    (["train", "CartPole-v1", "--n-envs", "3"], "must be a multiple of n_envs (3)"),
    (["train", "CartPole-v1", "--config", "missing.yaml"], "cannot read config file missing.yaml"),
    (["train", "Pendulum-v1", "--set", "env_kwargs={bogus_kw: 1}"],
     "Pendulum-v1 does not accept env_kwargs {'bogus_kw': 1}"),  # found building the agent: runs/ goes again
    (["evaluate", "nowhere", "--env", "CartPole-v1"], "no such file or directory: nowhere"),
    (["plot", "nowhere"], "no such directory: nowhere"),
])
def test_bad_input_is_one_line_with_exit_code_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("trpo-tf: error: ")
    assert message in captured.err
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(importlib.util.find_spec("moviepy") is not None, reason="moviepy is installed")
def test_render_video_without_moviepy_names_the_package(capsys):
    assert cli.main(["evaluate", "anything", "--render-video", "videos"]) == 2
    assert "--render-video needs the 'moviepy' package, which is not installed" in capsys.readouterr().err


def test_set_values_are_yaml_and_override_config_files_and_presets(tmp_path):
    config_file = tmp_path / "my.yaml"
    config_file.write_text("timesteps: 5000\nmax_kl: 2e-2\nvalue_lr: 3e-4\npolicy_hidden: [8]\n")
    args = cli.build_parser().parse_args(["train", "Pendulum-v1", "--config", str(config_file),
                                          "--set", "policy_hidden=[32, 32]", "--set", "normalize_observations=false",
                                          "--n-envs", "2"])
    config, total, sources = cli._resolve_config(args)
    preset_fields, _ = presets.load("Pendulum-v1")
    expected = TRPOConfig.from_dict({**preset_fields, "max_kl": 0.02, "value_lr": 3e-4, "n_envs": 2,
                                     "policy_hidden": [32, 32], "normalize_observations": False})
    assert config == expected and total == 5000
    assert sources.startswith("preset Pendulum-v1, ") and "--set policy_hidden=[32, 32]" in sources

    args = cli.build_parser().parse_args(["train", "Pendulum-v1", "--no-preset", "--timesteps", "1e4"])
    config, total, sources = cli._resolve_config(args)
    assert config == TRPOConfig() and total == 10_000 and sources == "defaults"


def test_every_preset_is_a_valid_config_for_a_registered_environment():
    names = presets.available()
    assert {"CartPole-v1", "Pendulum-v1", "Acrobot-v1", "MountainCarContinuous-v0", "HalfCheetah-v5",
            "Hopper-v5", "Walker2d-v5", "Swimmer-v5", "Ant-v5", "Humanoid-v5"} <= set(names)
    for name in names:
        check_env_id(name)
        fields, timesteps = presets.load(name)
        config = TRPOConfig.from_dict(fields)
        assert isinstance(timesteps, int) and timesteps > 0
        env = make_env(name, config.env_kwargs)  # the environment accepts the kwargs
        # and its action space takes the preset's distribution (a Beta needs finite bounds)
        action_head(env.action_space, config.init_log_std, config.action_distribution)
        env.close()
    assert presets.load("NoSuchEnv-v0") is None


def test_help_shows_defaults(capsys):
    for command in ("train", "evaluate", "export", "plot"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith(f"usage: trpo-tf {command}")
        assert "default" in text
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    assert "(default: 10)" in text and "runs/<ENV_ID>-seed<S>" in text


def test_bad_input_is_one_line_and_exit_2_but_a_bug_keeps_its_traceback_and_exits_1(tmp_path):
    """plot on a folder without runs is bad input; a plot that crashes inside is a bug."""
    bad = trpo_tf("plot", str(tmp_path), cwd=tmp_path)
    assert bad.returncode == 2
    assert _our_stderr(bad) == [f"trpo-tf: error: {tmp_path} has no progress.csv (nor do its subdirectories)"]
    assert "Traceback" not in bad.stderr
    # A bug: a run whose progress.csv makes plotting fail in a way that is not bad input.
    script = ("import sys; from trpo_tf import cli, plotting\n"
              "def broken(*args, **kwargs):\n    raise RuntimeError('a bug in plotting')\n"
              "plotting.plot = broken\nsys.exit(cli.main(['plot', sys.argv[1]]))\n")
    crashed = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=_env(), capture_output=True,
                             text=True, timeout=120)
    assert crashed.returncode == 1
    assert "Traceback" in crashed.stderr and "RuntimeError: a bug in plotting" in crashed.stderr
