"""MuJoCo learning benchmark: each environment's preset, five seeds, 1M steps each.

(Not named ``mujoco.py``: run as a script, that file would shadow the ``mujoco`` package for
every script in this folder.)

    python benchmarks/mujoco_learning.py --jobs 2        # the full benchmark (6 envs × 5 seeds × 1M)
    python benchmarks/mujoco_learning.py --quick         # smoke run: 2 envs × 1 seed × 20k steps
    python benchmarks/mujoco_learning.py --envs Hopper-v5 --set max_kl_schedule=linear --out /tmp/lever

Each run is ``trpo-tf train ENV --seed S --timesteps N --export ...`` (with ``--workers`` and
``--set`` passed on) in its own process, ``--jobs`` at a time, so the command that reproduces any
single run is the one printed. Without ``--workers`` each run is pinned to a core of its own, so it
runs single-threaded and repeats on any machine: ``taskset -c 0 <command>`` reproduces it (runs are
deterministic for a seed and thread count only). The export records a deterministic evaluation over
``--eval-episodes`` episodes. A run with a row in ``--out``/summary.csv is not run again, so a
benchmark that spans several sittings continues where it stopped (a run cut off mid-way resumes
from its last checkpoint with ``--resume``, and its row's seconds add the earlier part's training
time from its progress.csv); the rows of earlier invocations
with the same ``--out`` are kept (pass another ``--out`` for other settings), and invocations that
run at once on the same ``--out`` (one per core, ``taskset -c N``) merge their rows. Writes under
``--out``: ``runs/`` and ``exports/`` per run, ``curves.csv`` (env, seed, timesteps,
episode_return_mean per iteration), ``summary.csv`` (one row per run, after every run),
``summary.md`` (per environment: median, minimum, interquartile mean with a bootstrap 95% interval,
and the target) and ``learning_curves.png``.

The interquartile mean (IQM) is the mean of the middle half of the seeds' returns, trimming
⌊n/4⌋ runs at each end (the convention of ``scipy.stats.trim_mean(x, 0.25)``, which the
``rliable`` package uses; Agarwal et al., 2021). Its interval is the percentile bootstrap over
runs (10,000 resamples, fixed seed). ``rliable`` itself installs beside our pins but does not
import (its ``arch`` 7.2 fails against pandas 3.1), so this is NumPy.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import fcntl
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

from records import bootstrap_interval, interquartile_mean, plot_learning_curves, read_curves, read_summary, write_curves
from trpo_tf import checkpoint, plotting
from trpo_tf.export import read_metadata
from trpo_tf.files import PROGRESS_FILE

ENVS = ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Swimmer-v5", "Ant-v5", "Humanoid-v5"]
SEEDS = [0, 1, 2, 3, 4]
# Published 1M-step TRPO results, deterministic evaluation: rl-baselines3-zoo's benchmark for
# sb3-contrib TRPO (one tuned run each, -v3 environments); Humanoid: Tianshou's TRPO (best of
# its 10-seed averages). The targets of issue 15: every seed at or above the zoo (the minimum),
# Ant's median at the zoo and minimum at sb3-contrib's documented 3-seed figure, Humanoid's median.
PUBLISHED = {"HalfCheetah-v5": 1785, "Hopper-v5": 3618, "Walker2d-v5": 4933, "Swimmer-v5": 366, "Ant-v5": 4982,
             "Humanoid-v5": 810}
TARGETS = {"HalfCheetah-v5": {"minimum": 1785}, "Hopper-v5": {"minimum": 3618}, "Walker2d-v5": {"minimum": 4933},
           "Swimmer-v5": {"minimum": 366}, "Ant-v5": {"median": 4982, "minimum": 3554},
           "Humanoid-v5": {"median": 810}}
FIELDS = ["env", "seed", "timesteps", "eval_mean", "eval_std", "eval_episodes", "seconds"]
KEY_NAMES = ["env", "seed"]  # a run's key in curves.csv


def train(env_id: str, seed: int, timesteps: int, out: str, eval_episodes: int, extra: list[str],
          cores: queue.Queue | None = None) -> dict:
    """One training run in a subprocess (``extra``: more ``trpo-tf train`` arguments); its summary row.

    With ``cores``, the run takes a core from the queue, runs pinned to it and gives it back: one
    thread per run, so a seed's run repeats on any machine (runs are deterministic for a seed
    and thread count, and the same seed on one core and on two can end far apart)."""
    name = f"{env_id}-seed{seed}"
    run_dir = os.path.join(out, "runs", name)
    command = [sys.executable, "-m", "trpo_tf.cli", "train", env_id, "--seed", str(seed), "--timesteps",
               str(timesteps), "--logdir", run_dir, "--export",
               os.path.join(out, "exports", name), "--eval-episodes", str(eval_episodes), "--quiet", *extra]
    earlier = 0.0  # seconds the run had trained before an interruption
    stored = checkpoint.checkpoints(run_dir) if os.path.isdir(run_dir) else []
    if stored:  # an interrupted run (no row yet): continue it, bit-identical to an uninterrupted one
        command.append("--resume")
        earlier = seconds_before(run_dir, checkpoint.iteration_of(stored[0]))
    print(" ".join(command[1:]), flush=True)
    start = time.perf_counter()
    core = cores.get() if cores is not None else None
    try:
        completed = subprocess.run(command, capture_output=True, text=True, preexec_fn=None if core is None else (
            lambda: os.sched_setaffinity(0, {core})))
    finally:
        if cores is not None:
            cores.put(core)
    seconds = time.perf_counter() - start + earlier
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-2000:]}")
    metadata = read_metadata(os.path.join(out, "exports", name))
    evaluation = metadata["evaluation"]
    print(f"{name}: {evaluation['mean_return']:.1f} ± {evaluation['std_return']:.1f} in {seconds:.0f} s", flush=True)
    return {"env": env_id, "seed": seed, "timesteps": metadata["timesteps"], "eval_mean": evaluation["mean_return"],
            "eval_std": evaluation["std_return"], "eval_episodes": evaluation["episodes"], "seconds": round(seconds, 1)}


def seconds_before(run_dir: str, iteration: int) -> float:
    """Training seconds of iterations 1..``iteration`` of a run, from its progress.csv (the sum of the
    sampling, advantage, policy-step and value-fit times: a resumed run's row counts them for the
    part before the interruption, without that part's start-up and compilation)."""
    phases = ["sampling_seconds", "advantage_seconds", "policy_step_seconds", "value_fit_seconds"]
    with open(os.path.join(run_dir, PROGRESS_FILE), newline="") as file:
        return sum(sum(float(row[phase]) for phase in phases) for row in csv.DictReader(file)
                   if int(row["iteration"]) <= iteration)


def curves_of(out: str) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
    """(env, seed) → (timesteps [K], training return [K]) from ``out``/curves.csv."""
    return {(env_id, int(seed)): curve for (env_id, seed), curve in read_curves(
        os.path.join(out, "curves.csv"), KEY_NAMES).items()}


def plot_grid(out: str, rows: list[dict], envs: list[str]) -> str:
    """``out``/learning_curves.png: per environment the training return over its seeds and the final
    deterministic evaluations against the published figure (see :func:`records.plot_learning_curves`)."""
    path = os.path.join(out, "learning_curves.png")
    plot_learning_curves(curves_of(out), rows, envs, PUBLISHED, path)
    return path


def target_met(env_id: str, returns: list[float]) -> str:
    """"yes" / "no" against issue 15's target for ``env_id`` (see TARGETS), naming the statistic; "" without one."""
    target = TARGETS.get(env_id)
    if not target:
        return ""
    measured = {"minimum": min(returns), "median": statistics.median(returns)}
    parts = [f"{name} {measured[name]:,.0f} {'≥' if measured[name] >= bound else '<'} {bound:,}"
             for name, bound in target.items()]
    return ("yes" if all(measured[name] >= bound for name, bound in target.items()) else "no") + ": " + ", ".join(parts)


def summary_table(rows: list[dict], envs: list[str]) -> str:
    """Markdown: per environment the seeds' median, minimum, IQM with its interval, range and target."""
    lines = ["| environment | seeds | median | minimum | IQM [95% bootstrap interval] | range | mean training "
             "minutes | target met | published |", "|---|---|---|---|---|---|---|---|---|"]
    for env_id in envs:
        group = [row for row in rows if row["env"] == env_id]
        if not group:
            continue
        returns = [row["eval_mean"] for row in group]
        low, high = bootstrap_interval(returns)
        minutes = statistics.mean(row["seconds"] for row in group) / 60
        lines.append(f"| {env_id} | {len(returns)} | {statistics.median(returns):,.0f} | {min(returns):,.0f} "
                     f"| {float(interquartile_mean(np.array(returns))):,.0f} [{low:,.0f} – {high:,.0f}] "
                     f"| {min(returns):,.0f} – {max(returns):,.0f} | {minutes:.1f} | {target_met(env_id, returns)} "
                     f"| {PUBLISHED.get(env_id, float('nan')):,} |")
    return "\n".join(lines)


def write_results(out: str, rows: list[dict], envs: list[str], note: str) -> str:
    """summary.csv, curves.csv, learning_curves.png and summary.md from ``rows``; returns the table."""
    with open(os.path.join(out, "summary.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({key: row[key] for key in FIELDS} for row in rows)
    write_curves(os.path.join(out, "curves.csv"), KEY_NAMES, {
        (row["env"], str(row["seed"])): os.path.join(out, "runs", f"{row['env']}-seed{row['seed']}") for row in rows})
    plot_grid(out, rows, envs)
    table = summary_table(rows, envs)
    with open(os.path.join(out, "summary.md"), "w") as handle:
        handle.write(f"{table}\n\n{note}\n")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=ENVS)
    parser.add_argument("--seeds", nargs="+", type=int, default=SEEDS)
    parser.add_argument("--timesteps", type=int, default=1_000_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--workers", type=int, help="passed to trpo-tf train (sampling workers per run; "
                                                    "the runs are then not pinned to one core each)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="passed to trpo-tf train, e.g. --set max_kl_schedule=linear (repeatable)")
    parser.add_argument("--out", default="benchmarks/results/mujoco")
    parser.add_argument("--report", action="store_true", help="only rebuild the tables and figure from --out")
    parser.add_argument("--quick", action="store_true", help="2 envs × 1 seed × 20k steps, 2 evaluation episodes")
    args = parser.parse_args()
    if args.quick:
        args.envs, args.seeds, args.timesteps, args.eval_episodes = ENVS[:2], [0], 20_000, 2
    extra = ([] if args.workers is None else ["--workers", str(args.workers)]) + [
        part for item in args.set for part in ("--set", item)]
    os.makedirs(args.out, exist_ok=True)
    rows = {(row["env"], row["seed"]): row for row in read_summary(args.out)}
    for (env_id, seed), row in rows.items():
        if env_id in args.envs and row["timesteps"] < args.timesteps:
            parser.error(f"{args.out}/summary.csv holds {env_id} seed {seed} at {row['timesteps']:,} steps, not "
                         f"{args.timesteps:,}: pass another --out")
    envs = list(dict.fromkeys(args.envs + [env_id for env_id, _ in rows]))
    command = f"python benchmarks/mujoco_learning.py {' '.join(sys.argv[1:])}"
    jobs = [(env_id, seed) for seed in args.seeds for env_id in args.envs if (env_id, seed) not in rows]
    lock = threading.Lock()
    cores: queue.Queue | None = None
    if args.workers is None:  # each run on a core of its own (see train)
        cores = queue.Queue()
        for core in sorted(os.sched_getaffinity(0)):
            cores.put(core)
    start = time.perf_counter()

    finished: dict[tuple[str, int], dict] = {}  # this invocation's runs

    def record(job: tuple[str, int] | None, row: dict | None, note: str) -> str:
        """Add ``row`` (if any) and write the results; returns the table. Under a file lock, and from
        the rows summary.csv holds then (other invocations on the same --out, e.g. one per core, may
        have added or replaced some) plus this invocation's."""
        with lock, open(os.path.join(args.out, ".summary.lock"), "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            if job is not None and row is not None:
                finished[job] = row
            rows.clear()
            rows.update({(other["env"], other["seed"]): other for other in read_summary(args.out)})
            rows.update(finished)
            envs.extend(env_id for env_id, _ in rows if env_id not in envs)
            return write_results(args.out, ordered(), envs, note)

    def run(job: tuple[str, int]) -> None:
        row = train(*job, args.timesteps, args.out, args.eval_episodes, extra, cores)
        record(job, row, f"Command: {command}")  # after every run: an interrupted benchmark keeps what finished

    def ordered() -> list[dict]:
        return sorted(rows.values(), key=lambda row: (envs.index(row["env"]), row["seed"]))

    if not args.report:
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(run, jobs))
    if not rows:
        parser.error(f"no finished runs in {args.out}/summary.csv")
    wall = time.perf_counter() - start
    note = (f"Command: {command}" + (f" ({len(jobs)} runs, wall time {wall / 60:.1f} min with --jobs {args.jobs})"
                                     if jobs and not args.report else ""))
    table = record(None, None, note)
    print(table)
    print(f"results in {args.out}")
    print(json.dumps(ordered()))


if __name__ == "__main__":
    main()
