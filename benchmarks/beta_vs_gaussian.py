"""Beta against Gaussian policies on bounded action spaces: each environment's preset, several seeds.

    python benchmarks/beta_vs_gaussian.py                        # Pendulum-v1 (200k), Hopper-v5 and
                                                                 # HalfCheetah-v5 (1M), both heads, seeds 0 1 2
    python benchmarks/beta_vs_gaussian.py --distributions beta \\
        --gaussian-from benchmarks/results/mujoco/summary.csv    # Gaussian rows from an earlier mujoco_learning run

Each run is ``trpo-tf train ENV --seed S --set action_distribution=D --export ...`` in its own
process, one at a time, so the command that reproduces any single run is the one printed; the export
records a deterministic evaluation over ``--eval-episodes`` episodes (for the Beta policy: the mean
of each Beta). A run with a row in ``--out``/summary.csv or an export under ``--out`` is not run
again, so an interrupted benchmark continues where it stopped, and rows of earlier invocations with
the same ``--out`` are kept. After every run the results so far are written under ``--out``:
``summary.csv`` (one row per run), ``summary.md`` (median and range over seeds per environment and
distribution) and ``curves.csv`` (training return per iteration). ``--gaussian-from`` takes the
Gaussian rows from the ``summary.csv`` of ``benchmarks/mujoco_learning.py`` (the same presets and
seeds) instead of running them.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time

from records import read_summary, write_curves
from trpo_tf.export import read_metadata

ENVS = ["Pendulum-v1", "Hopper-v5", "HalfCheetah-v5"]
DISTRIBUTIONS = ["beta", "gaussian"]
FIELDS = ["env", "distribution", "seed", "timesteps", "eval_mean", "eval_std", "eval_episodes", "seconds", "source"]


def run_name(env_id: str, distribution: str, seed: int) -> str:
    return f"{env_id}-{distribution}-seed{seed}"


def train(env_id: str, distribution: str, seed: int, timesteps: int | None, out: str, eval_episodes: int,
          earlier: dict | None = None) -> dict:
    """One training run in a subprocess; returns its summary row.

    Skipped when ``earlier`` (its row in summary.csv) is given: that row is returned as it was.
    Skipped too when its export exists: the row is read from the export's metadata (training
    time unknown)."""
    name = run_name(env_id, distribution, seed)
    export_dir = os.path.join(out, "exports", name)
    if earlier is not None:
        return earlier
    command = [sys.executable, "-m", "trpo_tf.cli", "train", env_id, "--seed", str(seed), "--set",
               f"action_distribution={distribution}", "--logdir", os.path.join(out, "runs", name),
               "--export", export_dir, "--eval-episodes", str(eval_episodes), "--quiet"]
    if timesteps is not None:
        command[5:5] = ["--timesteps", str(timesteps)]
    seconds = float("nan")
    if not os.path.isdir(export_dir):
        print(" ".join(command[1:]), flush=True)
        start = time.perf_counter()
        completed = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if completed.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-2000:]}")
    metadata = read_metadata(export_dir)
    evaluation = metadata["evaluation"]
    print(f"{name}: {evaluation['mean_return']:.1f} ± {evaluation['std_return']:.1f} in {seconds:.0f} s", flush=True)
    return {"env": env_id, "distribution": distribution, "seed": seed, "timesteps": metadata["timesteps"],
            "eval_mean": evaluation["mean_return"], "eval_std": evaluation["std_return"],
            "eval_episodes": evaluation["episodes"], "seconds": round(seconds, 1), "source": "this benchmark"}


def earlier_gaussian_rows(path: str, envs: list[str], seeds: list[int]) -> list[dict]:
    """Gaussian rows for ``envs`` × ``seeds`` from a mujoco_learning.py summary.csv at ``path``."""
    with open(path, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["env"] in envs and int(row["seed"]) in seeds]
    return [{"env": row["env"], "distribution": "gaussian", "seed": int(row["seed"]),
             "timesteps": int(row["timesteps"]), "eval_mean": float(row["eval_mean"]),
             "eval_std": float(row["eval_std"]), "eval_episodes": int(row["eval_episodes"]),
             "seconds": float(row["seconds"]), "source": path} for row in rows]


def summary_table(rows: list[dict], envs: list[str]) -> str:
    """Markdown: per environment, the median and range over seeds of each distribution's evaluation."""
    lines = ["| environment | steps | Beta median | Beta range | Beta seeds | Gaussian median | Gaussian range "
             "| Gaussian seeds |", "|---|---|---|---|---|---|---|---|"]
    for env_id in envs:
        cells = []
        for distribution in ("beta", "gaussian"):
            returns = [row["eval_mean"] for row in rows if row["env"] == env_id and row["distribution"] == distribution]
            cells += ([f"{statistics.median(returns):,.0f}", f"{min(returns):,.0f} – {max(returns):,.0f}",
                       str(len(returns))] if returns else ["–", "–", "0"])
        steps = sorted({row["timesteps"] for row in rows if row["env"] == env_id})
        if steps:
            lines.append(f"| {env_id} | {'/'.join(f'{s:,}' for s in steps)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(out: str, rows: list[dict], envs: list[str], command: str) -> None:
    """summary.csv, summary.md and curves.csv (runs of this benchmark only; see records.py) under ``out``."""
    with open(os.path.join(out, "summary.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.join(out, "summary.md"), "w") as handle:
        handle.write(f"{summary_table(rows, envs)}\n\nDeterministic evaluation (10 episodes) after training; "
                     f"command: {command}\n")
    write_curves(os.path.join(out, "curves.csv"), ["env", "distribution", "seed"], {
        (row["env"], row["distribution"], str(row["seed"])): os.path.join(
            out, "runs", run_name(row["env"], row["distribution"], row["seed"]))
        for row in rows if row["source"] == "this benchmark"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=ENVS)
    parser.add_argument("--distributions", nargs="+", choices=DISTRIBUTIONS, default=DISTRIBUTIONS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--timesteps", type=int, default=None, help="steps per run (default: each preset's)")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--gaussian-from", metavar="SUMMARY_CSV",
                        help="take the Gaussian rows from this benchmarks/mujoco_learning.py summary.csv")
    parser.add_argument("--out", default="benchmarks/results/beta_vs_gaussian")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    command = "python benchmarks/beta_vs_gaussian.py " + " ".join(sys.argv[1:])
    # Rows by (env, distribution, seed): those of earlier invocations with this --out, then these.
    rows = {(row["env"], row["distribution"], row["seed"]): row for row in read_summary(args.out)}
    if args.gaussian_from:
        rows.update({(row["env"], "gaussian", row["seed"]): row
                     for row in earlier_gaussian_rows(args.gaussian_from, args.envs, args.seeds)})
    envs = list(dict.fromkeys(args.envs + [row["env"] for row in rows.values()]))
    # Seed by seed, so that an interrupted benchmark has every environment at its first seeds.
    for seed in args.seeds:
        for env_id in args.envs:
            for distribution in args.distributions:
                key = (env_id, distribution, seed)
                rows[key] = train(env_id, distribution, seed, args.timesteps, args.out, args.eval_episodes,
                                  rows.get(key))
                ordered = sorted(rows.values(), key=lambda row: (envs.index(row["env"]), row["distribution"],
                                                                 row["seed"]))
                write_results(args.out, ordered, envs, command)
    print(summary_table(list(rows.values()), envs))


if __name__ == "__main__":
    main()
