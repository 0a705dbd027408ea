"""MuJoCo learning benchmark: each environment's preset, several seeds, 1M steps each.

(Not named ``mujoco.py``: run as a script, that file would shadow the ``mujoco`` package for
every script in this folder.)

    python benchmarks/mujoco_learning.py                 # the full benchmark (5 envs × 3 seeds × 1M)
    python benchmarks/mujoco_learning.py --quick         # smoke run: 2 envs × 1 seed × 20k steps

Each run is ``trpo-tf train ENV --seed S --timesteps N --export ...`` in its own process
(``--jobs`` at a time), so the command that reproduces any single run is the one printed.
The export records a deterministic evaluation over ``--eval-episodes`` episodes. Writes
under ``--out``: ``runs/`` and ``exports/`` per run, ``curves.csv`` (env, seed, timesteps,
episode_return_mean per iteration), ``summary.csv`` (one row per run), ``summary.md``
(median and range over seeds next to the published numbers) and ``learning_curves.png``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import os
import statistics
import subprocess
import sys
import time

from trpo_tf import plotting
from trpo_tf.export import read_metadata

ENVS = ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Swimmer-v5", "Ant-v5"]
# rl-baselines3-zoo's benchmark for sb3-contrib TRPO: one tuned run each, 1M steps,
# deterministic evaluation, on the -v3 environments.
PUBLISHED = {"HalfCheetah-v5": 1785, "Hopper-v5": 3618, "Walker2d-v5": 4933, "Swimmer-v5": 366, "Ant-v5": 4982}


def train(env_id: str, seed: int, timesteps: int, out: str, eval_episodes: int) -> dict:
    """One training run in a subprocess; returns its summary row."""
    name = f"{env_id}-seed{seed}"
    command = [sys.executable, "-m", "trpo_tf.cli", "train", env_id, "--seed", str(seed), "--timesteps",
               str(timesteps), "--logdir", os.path.join(out, "runs", name), "--export",
               os.path.join(out, "exports", name), "--eval-episodes", str(eval_episodes), "--quiet"]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-2000:]}")
    metadata = read_metadata(os.path.join(out, "exports", name))
    evaluation = metadata["evaluation"]
    print(f"{name}: {evaluation['mean_return']:.1f} ± {evaluation['std_return']:.1f} in {seconds:.0f} s", flush=True)
    return {"env": env_id, "seed": seed, "timesteps": metadata["timesteps"], "eval_mean": evaluation["mean_return"],
            "eval_std": evaluation["std_return"], "eval_episodes": evaluation["episodes"], "seconds": round(seconds, 1)}


def write_curves(out: str, rows: list[dict]) -> None:
    with open(os.path.join(out, "curves.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["env", "seed", "timesteps", "episode_return_mean"])
        for row in rows:
            steps, returns = plotting.read_progress(os.path.join(out, "runs", f"{row['env']}-seed{row['seed']}"))
            writer.writerows([row["env"], row["seed"], int(s), float(r)] for s, r in zip(steps, returns))


def plot_grid(out: str, envs: list[str], seeds: list[int]) -> str:
    """One panel per environment: mean training return over seeds, min–max band, published line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4 * len(envs), 3.4), dpi=100)
    FigureCanvasAgg(figure)
    for index, env_id in enumerate(envs):
        axes = figure.add_subplot(1, len(envs), index + 1)
        curves = [plotting.read_progress(os.path.join(out, "runs", f"{env_id}-seed{seed}")) for seed in seeds]
        grid, mean, lower, upper = plotting.aggregate(curves)
        axes.plot(grid, mean, label=f"trpo_tf ({len(seeds)} seeds)")
        axes.fill_between(grid, lower, upper, alpha=0.25, linewidth=0)
        if env_id in PUBLISHED:
            axes.axhline(PUBLISHED[env_id], color="gray", linestyle="--", label="published (zoo, -v3)")
        axes.set_title(env_id)
        axes.set_xlabel("timesteps")
        axes.grid(alpha=0.3)
        if index == 0:
            axes.set_ylabel("training episode return (last 100)")
            axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    path = os.path.join(out, "learning_curves.png")
    figure.savefig(path)
    return path


def summary_table(rows: list[dict], envs: list[str]) -> str:
    lines = ["| environment | trpo_tf median | range over seeds | seeds | published (rl-baselines3-zoo, -v3) |",
             "|---|---|---|---|---|"]
    for env_id in envs:
        returns = [row["eval_mean"] for row in rows if row["env"] == env_id]
        if returns:
            lines.append(f"| {env_id} | {statistics.median(returns):,.0f} | {min(returns):,.0f} – {max(returns):,.0f} "
                         f"| {len(returns)} | {PUBLISHED.get(env_id, float('nan')):,} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=ENVS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--timesteps", type=int, default=1_000_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--out", default="benchmarks/results/mujoco")
    parser.add_argument("--quick", action="store_true", help="2 envs × 1 seed × 20k steps, 2 evaluation episodes")
    args = parser.parse_args()
    if args.quick:
        args.envs, args.seeds, args.timesteps, args.eval_episodes = ENVS[:2], [0], 20_000, 2
    jobs = [(env_id, seed) for seed in args.seeds for env_id in args.envs]
    earlier = [f"{env_id}-seed{seed}" for env_id, seed in jobs
               if os.path.exists(os.path.join(args.out, "runs", f"{env_id}-seed{seed}"))]
    if earlier:
        parser.error(f"{args.out}/runs already holds {', '.join(earlier)} from an earlier benchmark: "
                     f"remove {args.out}/runs and {args.out}/exports, or pass another --out")
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda job: train(*job, args.timesteps, args.out, args.eval_episodes), jobs))
    rows.sort(key=lambda row: (args.envs.index(row["env"]), row["seed"]))
    with open(os.path.join(args.out, "summary.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_curves(args.out, rows)
    plot_grid(args.out, args.envs, args.seeds)
    table = summary_table(rows, args.envs)
    wall = time.perf_counter() - start
    with open(os.path.join(args.out, "summary.md"), "w") as handle:
        handle.write(f"{table}\n\nWall time: {wall / 60:.1f} min with --jobs {args.jobs}; command: "
                     f"python benchmarks/mujoco_learning.py {' '.join(sys.argv[1:])}\n")
    print(table)
    print(f"wall time {wall / 60:.1f} min; results in {args.out}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
