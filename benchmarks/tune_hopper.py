"""Tuning benchmark: ``trpo-tf tune`` on Hopper-v5, then the best config against the preset on five seeds.

    python benchmarks/tune_hopper.py                 # 50 trials × 1M steps (--jobs 2), then 5 seeds × 1M each,
                                                     # into benchmarks/results/tune/hopper-1m
    python benchmarks/tune_hopper.py --quick         # smoke run: 2 trials × 4,096 steps, then 1 seed × 4,096 each
    python benchmarks/tune_hopper.py --report        # only rebuild summary.md from --out
    python benchmarks/tune_hopper.py --trials 20 --timesteps 500000 --benchmark-timesteps 1000000 \
        --out benchmarks/results/tune/hopper-500k    # shorter trials; the five seeds at the published budget

Phase 1 runs ``trpo-tf tune ENV --trials N --timesteps T --jobs J --out OUT/study`` (the study is an SQLite
file there, so running this script again continues it; the wall time of every invocation is added up in
OUT/tune.json). Phase 2 runs ``benchmarks/mujoco_learning.py`` twice with the same seeds, budget and
evaluation: on the preset (OUT/preset) and on the best trial's config (OUT/tuned, passed as ``--set``
for every field where best.yaml differs from the preset), each run pinned to a core. Runs already in a
summary.csv are not repeated. Writes OUT/summary.md and prints it: the tuning's trial count and wall
time, the best trial, its changes to the preset, and each config's returns, median and minimum.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time


from records import read_summary
from trpo_tf import TRPOConfig, presets

HERE = os.path.dirname(os.path.abspath(__file__))


def tune(args: argparse.Namespace) -> None:
    """Phase 1: run (or continue) the study; add this invocation's wall time to OUT/tune.json."""
    command = [os.path.join(os.path.dirname(sys.executable), "trpo-tf"), "tune", args.env, "--trials",
               str(args.trials), "--timesteps", str(args.timesteps), "--jobs", str(args.jobs), "--seeds",
               str(args.tune_seeds), "--eval-episodes", str(args.eval_episodes), "--out",
               os.path.join(args.out, "study")]
    print("$", shlex.join(["trpo-tf", *command[1:]]), flush=True)
    start = time.perf_counter()
    try:
        subprocess.run(command, check=True)
    finally:  # an interrupted invocation's time counts too (the study keeps its finished trials)
        record = read_tune_record(args.out)
        record["wall_seconds"] += time.perf_counter() - start
        record["command"] = shlex.join(["trpo-tf", *command[1:]])
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "tune.json"), "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=1)


def read_tune_record(out: str) -> dict:
    path = os.path.join(out, "tune.json")
    if not os.path.isfile(path):
        return {"wall_seconds": 0.0}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def tuned_changes(env_id: str, best_file: str) -> dict:
    """The fields where best.yaml differs from the preset (TRPOConfig's defaults without one)."""
    fields, _ = presets.read_file(best_file)
    preset = presets.load(env_id)
    reference = TRPOConfig.from_dict(preset[0] if preset else {}).to_dict()
    return {key: value for key, value in TRPOConfig.from_dict(fields).to_dict().items() if reference[key] != value}


def compact(value: object) -> str:
    """``value`` as a --set VALUE (YAML): JSON without spaces."""
    return json.dumps(value, separators=(",", ":"))


def five_seeds(args: argparse.Namespace, name: str, changes: dict) -> None:
    """Phase 2 for one config: benchmarks/mujoco_learning.py on ``args.seeds`` into OUT/``name``."""
    command = [sys.executable, os.path.join(HERE, "mujoco_learning.py"), "--envs", args.env, "--seeds",
               *map(str, args.seeds), "--timesteps", str(args.benchmark_timesteps), "--eval-episodes",
               str(args.eval_episodes),
               "--jobs", str(args.jobs), "--out", os.path.join(args.out, name)]
    command += [part for key, value in changes.items() for part in ("--set", f"{key}={compact(value)}")]
    print("$", shlex.join(["python", *command[1:]]), flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def report(args: argparse.Namespace) -> str:
    """OUT/summary.md from the study's results, OUT/tune.json and the two summary.csv files."""
    record = read_tune_record(args.out)
    best_file = os.path.join(args.out, "study", "best.yaml")
    with open(best_file, encoding="utf-8") as handle:
        header = [line[2:].rstrip() for line in handle if line.startswith("# ")]
    with open(os.path.join(args.out, "study", "trials.csv"), encoding="utf-8") as handle:
        states = [line.split(",")[1] for line in handle.readlines()[1:]]
    counted = ", ".join(f"{states.count(state)} {state.lower()}" for state in ("COMPLETE", "PRUNED", "FAIL"))
    changes = tuned_changes(args.env, best_file)
    lines = [f"# {args.env}: trpo-tf tune, then five seeds of the best config against the preset", "",
             f"Tuning: `{record.get('command', '?')}`: {len(states)} trials ({counted}), "
             f"wall time {record['wall_seconds'] / 3600:.2f} h ({record['wall_seconds'] / 60:.0f} min) in total.", "",
             *[f"> {line}" for line in header], "",
             "Changes to the preset: " + (", ".join(f"`{key}={compact(value)}`" for key, value in changes.items())
                                          or "none"), "",
             f"Each config, seeds {', '.join(map(str, args.seeds))}, {args.benchmark_timesteps:,} steps, deterministic "
             f"evaluation over {args.eval_episodes} episodes:", "",
             "| config | returns | median | minimum | seconds per run |", "| --- | --- | --- | --- | --- |"]
    for name in ("preset", "tuned"):
        rows = [row for row in read_summary(os.path.join(args.out, name)) if row["env"] == args.env]
        returns = [row["eval_mean"] for row in sorted(rows, key=lambda row: row["seed"])]
        if returns:
            lines.append(f"| {name} | {' / '.join(f'{value:,.0f}' for value in returns)} | "
                         f"{statistics.median(returns):,.0f} | {min(returns):,.0f} | "
                         f"{statistics.mean(row['seconds'] for row in rows):,.0f} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "summary.md"), "w", encoding="utf-8") as handle:
        handle.write(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--timesteps", type=int, default=1_000_000, help="per trial")
    parser.add_argument("--benchmark-timesteps", type=int, default=None,
                        help="per run of the five-seed comparison (default: --timesteps)")
    parser.add_argument("--tune-seeds", type=int, default=1, help="seeds per trial (trpo-tf tune --seeds)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="seeds of phase 2")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", help="results directory (default: benchmarks/results/tune/hopper-1m, with --quick "
                                      "runs/tune-hopper-quick; a relative path keeps the recorded commands portable)")
    parser.add_argument("--report", action="store_true", help="only rebuild summary.md")
    parser.add_argument("--quick", action="store_true", help="2 trials × 4,096 steps, 1 seed, 2 evaluation episodes")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.timesteps, args.seeds, args.eval_episodes = 2, 4096, [0], 2
    if args.out is None:
        args.out = (os.path.join("runs", "tune-hopper-quick") if args.quick
                    else os.path.relpath(os.path.join(HERE, "results", "tune", "hopper-1m")))
    if args.benchmark_timesteps is None:
        args.benchmark_timesteps = args.timesteps
    os.makedirs(args.out, exist_ok=True)
    if not args.report:
        tune(args)
        five_seeds(args, "preset", {})
        five_seeds(args, "tuned", tuned_changes(args.env, os.path.join(args.out, "study", "best.yaml")))
    print(report(args))
    print(f"results in {args.out}")


if __name__ == "__main__":
    main()
