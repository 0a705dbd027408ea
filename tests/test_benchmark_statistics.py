"""The statistics benchmarks/mujoco_learning.py reports: IQM against SciPy's trimmed mean, the
bootstrap interval's properties, and the targets of issue 15."""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pytest
from scipy import stats

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


@pytest.fixture(scope="module")
def benchmark():
    """benchmarks/mujoco_learning.py as a module (it imports its neighbours, as when run as a script)."""
    sys.path.insert(0, BENCHMARKS)
    try:
        spec = importlib.util.spec_from_file_location("mujoco_learning", os.path.join(BENCHMARKS, "mujoco_learning.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(BENCHMARKS)
    return module


@pytest.mark.parametrize("runs", [3, 4, 5, 8, 10, 13])
def test_interquartile_mean_is_scipys_quarter_trimmed_mean(benchmark, runs):
    values = np.random.default_rng(runs).normal(1000.0, 300.0, size=runs)
    assert benchmark.interquartile_mean(values) == pytest.approx(stats.trim_mean(values, 0.25))


def test_interquartile_mean_of_five_seeds_drops_the_best_and_the_worst(benchmark):
    assert benchmark.interquartile_mean(np.array([1700.0, 4400.0, 1800.0, 3900.0, 100.0])) == pytest.approx(
        (1700 + 1800 + 3900) / 3)


def test_bootstrap_interval_brackets_the_iqm_within_the_runs_range(benchmark):
    returns = [1728.0, 1859.0, 1791.0, 4407.0, 1700.0]
    low, high = benchmark.bootstrap_interval(returns)
    assert min(returns) <= low <= benchmark.interquartile_mean(np.array(returns)) <= high <= max(returns)
    assert benchmark.bootstrap_interval(returns) == (low, high)  # a fixed seed: the table does not move
    assert benchmark.bootstrap_interval([3000.0] * 5) == (3000.0, 3000.0)


def test_targets_name_the_statistic_that_misses(benchmark):
    assert benchmark.target_met("Hopper-v5", [3700.0, 3600.0, 3650.0]) == "no: minimum 3,600 < 3,618"
    assert benchmark.target_met("Ant-v5", [5000.0, 4990.0, 3600.0]) == \
        "yes: median 4,990 ≥ 4,982, minimum 3,600 ≥ 3,554"
    assert benchmark.target_met("Humanoid-v5", [800.0, 820.0, 900.0]) == "yes: median 820 ≥ 810"
    assert benchmark.target_met("Pendulum-v1", [-150.0]) == ""


def test_an_interrupted_run_resumes_and_its_seconds_count_the_part_before(benchmark, tmp_path, monkeypatch):
    """A run directory with a checkpoint and no row: the benchmark continues it with --resume, and
    the row's seconds add the phase times of the iterations up to that checkpoint (rows after it were
    trained again after the interruption)."""
    run_dir = tmp_path / "runs" / "Hopper-v5-seed2"
    (run_dir / "checkpoints").mkdir(parents=True)
    for suffix in ("index", "data-00000-of-00001"):
        (run_dir / "checkpoints" / f"ckpt-2.{suffix}").write_bytes(b"")
    (run_dir / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-2"\n'
                                                       'all_model_checkpoint_paths: "ckpt-2"\n')
    phases = ["sampling_seconds", "advantage_seconds", "policy_step_seconds", "value_fit_seconds"]
    lines = ["iteration,timesteps," + ",".join(phases), "1,2048,1.0,0.25,2.0,0.5", "2,4096,1.5,0.25,2.5,0.75",
             "3,6144,9.0,9.0,9.0,9.0"]
    (run_dir / "progress.csv").write_text("\n".join(lines) + "\n")
    commands = []

    class Completed:
        returncode = 0
        stderr = ""

    def run(command, **_):
        commands.append(command)
        return Completed()

    monkeypatch.setattr(benchmark.subprocess, "run", run)
    monkeypatch.setattr(benchmark, "read_metadata", lambda path: {
        "timesteps": 1_001_472, "evaluation": {"mean_return": 3600.0, "std_return": 1.0, "episodes": 10}})
    row = benchmark.train("Hopper-v5", 2, 1_000_000, str(tmp_path), 10, [])
    assert commands[0][-1] == "--resume"
    assert 3.75 + 5.0 <= row["seconds"] < 3.75 + 5.0 + 5.0  # iterations 1-2, plus this call's few ms

    row = benchmark.train("Hopper-v5", 3, 1_000_000, str(tmp_path), 10, [])  # no run directory: a new run
    assert "--resume" not in commands[1] and row["seconds"] < 5.0
