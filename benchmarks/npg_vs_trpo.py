"""NPG against TRPO: how often the natural gradient's full step breaks the trust region, and what it costs.

    python benchmarks/npg_vs_trpo.py                      # the full benchmark (presets' lengths: 200k / 1M / 1M)
    python benchmarks/npg_vs_trpo.py --timesteps 300000   # every run capped at 300k steps
    python benchmarks/npg_vs_trpo.py --quick              # smoke run: Pendulum, 1 seed, 8k steps

Runs ``trpo_tf.TRPO`` in this process, one run after another, for each environment's preset
(``TRPOConfig.preset``) with ``algorithm`` "trpo" and "npg", on each seed; then TRPO on Hopper-v5
with 1, 3 and 25 conjugate-gradient iterations (10, the preset's, is the main run). Every run
ends with a deterministic evaluation over ``--eval-episodes`` episodes.

Each finished run is written to ``OUT/runs/<name>.json`` (its summary and its per-iteration
history of the quadratic model's keys), and a run whose file exists is not run again: an
interrupted benchmark resumes where it stopped, and ``--report`` rebuilds the tables and the
figure from the files alone. Writes under ``--out``: ``summary.csv`` (one row per run),
``summary.md`` (the tables), ``iterations.csv`` (every iteration of every run) and
``npg_vs_trpo.png`` (per environment, the full step's measured KL / δ per iteration beside
the learning curves).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from typing import Any

import numpy as np

ENVS = ["Pendulum-v1", "Hopper-v5", "HalfCheetah-v5"]
ALGORITHMS = ["trpo", "npg"]
CG_ENV, CG_ITERS = "Hopper-v5", [1, 3, 10, 25]
HISTORY_KEYS = ["timesteps", "episode_return_mean", "kl", "kl_predicted", "kl_full_step", "kl_ratio",
                "surrogate_predicted", "surrogate_full_step", "cg_residual", "line_search_steps",
                "step_accepted", "policy_step_seconds"]


def run_name(env_id: str, algorithm: str, seed: int, cg_iters: int | None) -> str:
    """File stem of one run: ``Hopper-v5-trpo-seed0`` or, off the preset's CG iterations, ``...-cg3``."""
    return f"{env_id}-{algorithm}-seed{seed}" + ("" if cg_iters is None else f"-cg{cg_iters}")


def train(env_id: str, algorithm: str, seed: int, cg_iters: int | None, timesteps: int | None,
          eval_episodes: int) -> dict[str, Any]:
    """One run with the preset (``algorithm``, and ``cg_iters`` when given): its summary and history."""
    from trpo_tf import TRPO, TRPOConfig

    changes: dict[str, Any] = {"algorithm": algorithm}
    if cg_iters is not None:
        changes["cg_iters"] = cg_iters
    config = TRPOConfig.preset(env_id, **changes)
    length = budget(env_id, timesteps)
    start = time.perf_counter()
    agent = TRPO(env_id, config, seed=seed)
    agent.learn(length)
    seconds = time.perf_counter() - start
    evaluation = agent.evaluate(episodes=eval_episodes)
    agent.close()
    history = {key: [entry[key] for entry in agent.history] for key in HISTORY_KEYS}
    return {"env": env_id, "algorithm": algorithm, "seed": seed, "cg_iters": config.cg_iters,
            "max_kl": config.max_kl, "budget": length, "timesteps": agent.timesteps, "eval_mean": evaluation["mean_return"],
            "eval_std": evaluation["std_return"], "eval_episodes": evaluation["episodes"],
            "train_seconds": round(seconds, 1), "history": history}


def budget(env_id: str, timesteps: int | None) -> int:
    """The steps of one run: the preset's length, capped at ``timesteps``."""
    from trpo_tf import presets

    preset = presets.load(env_id)
    length = preset[1] if preset is not None else None
    if length is None:
        raise SystemExit(f"{env_id} has no preset with a run length")
    return length if timesteps is None else min(timesteps, length)


def jobs(envs: list[str], seeds: list[int], cg_seeds: list[int]) -> list[tuple[str, str, int, int | None]]:
    """(env, algorithm, seed, cg_iters or None for the preset's) of every run, in the order they run."""
    main: list[tuple[str, str, int, int | None]] = [
        (env_id, algorithm, seed, None) for seed in seeds for env_id in envs for algorithm in ALGORITHMS]
    cg = [(CG_ENV, "trpo", seed, k) for seed in cg_seeds for k in CG_ITERS
          if CG_ENV in envs and k != _preset_cg_iters(CG_ENV)]
    return main + cg


def _preset_cg_iters(env_id: str) -> int:
    from trpo_tf import TRPOConfig

    return TRPOConfig.preset(env_id).cg_iters


def _check_budget(path: str, env_id: str, timesteps: int | None) -> None:
    """Refuse to mix runs of another length into this benchmark's tables."""
    length = budget(env_id, timesteps)
    with open(path, encoding="utf-8") as handle:
        recorded = json.load(handle)["budget"]
    if recorded != length:
        raise SystemExit(f"{path} is a run of {recorded:,} steps, not {length:,}: pass another --out or remove it")


def load_runs(out: str) -> list[dict[str, Any]]:
    """Every finished run under ``out/runs``."""
    folder = os.path.join(out, "runs")
    names = sorted(name for name in os.listdir(folder) if name.endswith(".json")) if os.path.isdir(folder) else []
    runs = []
    for name in names:
        with open(os.path.join(folder, name), encoding="utf-8") as handle:
            runs.append(json.load(handle))
    return runs


def kl_statistics(run: dict[str, Any]) -> dict[str, float]:
    """Of one run's iterations: the fraction whose full-step KL (and whose taken step's KL) exceeds δ, and
    the median / 95th percentile / maximum of the full step's KL / δ."""
    history, delta = run["history"], run["max_kl"]
    full = np.asarray(history["kl_full_step"], dtype=float) / delta
    taken = np.asarray(history["kl"], dtype=float) / delta
    return {"full_over": float(np.mean(full > 1.0)), "taken_over": float(np.mean(taken > 1.0)),
            "median": float(np.median(full)), "p95": float(np.percentile(full, 95)), "max": float(np.max(full))}


def summary_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per run for summary.csv."""
    rows = []
    for run in runs:
        history = run["history"]
        rows.append({"env": run["env"], "algorithm": run["algorithm"], "seed": run["seed"],
                     "cg_iters": run["cg_iters"], "max_kl": run["max_kl"], "timesteps": run["timesteps"],
                     "iterations": len(history["kl"]),
                     **{f"kl_{key}": round(value, 4) for key, value in kl_statistics(run).items()},
                     "kl_ratio_median": round(float(np.nanmedian(history["kl_ratio"])), 4),
                     "cg_residual_median": float(np.median(history["cg_residual"])),
                     "surrogate_full_over_predicted_median": round(float(np.nanmedian(
                         np.asarray(history["surrogate_full_step"]) / np.asarray(history["surrogate_predicted"]))), 4),
                     "line_search_steps_mean": round(float(np.mean(history["line_search_steps"])), 3),
                     "restored": int(len(history["step_accepted"]) - sum(history["step_accepted"])),
                     "policy_step_ms_median": round(1000 * float(np.median(history["policy_step_seconds"])), 1),
                     "eval_mean": round(run["eval_mean"], 1), "eval_std": round(run["eval_std"], 1),
                     "train_seconds": run["train_seconds"]})
    return rows


def _range(values: list[float], digits: int = 0) -> str:
    """``median [min – max]`` of per-seed values."""
    return (f"{np.median(values):,.{digits}f} [{min(values):,.{digits}f} – {max(values):,.{digits}f}]"
            if values else "–")


def main_table(rows: list[dict[str, Any]], envs: list[str]) -> str:
    """Per environment and algorithm, over seeds (iterations pooled): the KL statistics and the returns."""
    lines = ["| environment | algorithm | seeds | steps | full step: KL > δ | taken step: KL > δ | full-step KL / δ: "
             "median / 95th pct / max | measured / predicted KL (median) | restored steps | evaluation return, "
             "median [min – max] |", "|---|---|---|---|---|---|---|---|---|---|"]
    for env_id in envs:
        for algorithm in ALGORITHMS:
            group = [r for r in rows if r["env"] == env_id and r["algorithm"] == algorithm
                     and r["cg_iters"] == _preset_cg_iters(env_id)]
            if not group:
                continue
            weights = np.array([r["iterations"] for r in group], dtype=float)

            def pooled(key: str, group: list[dict[str, Any]] = group, weights: np.ndarray = weights) -> float:
                return float(np.average([r[key] for r in group], weights=weights))

            lines.append(f"| {env_id} | {algorithm.upper()} | {len(group)} | {group[0]['timesteps']:,} "
                         f"| {pooled('kl_full_over'):.0%} | {pooled('kl_taken_over'):.0%} "
                         f"| {np.median([r['kl_median'] for r in group]):.2f} / "
                         f"{np.median([r['kl_p95'] for r in group]):.2f} / {max(r['kl_max'] for r in group):.2f} "
                         f"| {np.median([r['kl_ratio_median'] for r in group]):.2f} "
                         f"| {sum(r['restored'] for r in group)} | {_range([r['eval_mean'] for r in group])} |")
    return "\n".join(lines)


def cg_table(rows: list[dict[str, Any]]) -> str:
    """TRPO on Hopper by CG iterations: residual, full-step KL, returns, time per policy step and per run."""
    lines = ["| CG iterations | seeds | CG residual ‖Hx − g‖/‖g‖ (median) | full step: KL > δ "
             "| evaluation return, median [min – max] | policy step, ms (median) | run, s (median) |",
             "|---|---|---|---|---|---|---|"]
    for k in CG_ITERS:
        group = [r for r in rows if r["env"] == CG_ENV and r["algorithm"] == "trpo" and r["cg_iters"] == k]
        if group:
            lines.append(f"| {k} | {len(group)} | {np.median([r['cg_residual_median'] for r in group]):.2g} "
                         f"| {np.mean([r['kl_full_over'] for r in group]):.0%} "
                         f"| {_range([r['eval_mean'] for r in group])} "
                         f"| {np.median([r['policy_step_ms_median'] for r in group]):.0f} "
                         f"| {np.median([r['train_seconds'] for r in group]):.0f} |")
    return "\n".join(lines)


def write_iterations(out: str, runs: list[dict[str, Any]]) -> None:
    """Every iteration of every run, one row each."""
    with open(os.path.join(out, "iterations.csv"), "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["env", "algorithm", "seed", "cg_iters", "iteration"] + HISTORY_KEYS)
        for run in runs:
            history = run["history"]
            for index in range(len(history["kl"])):
                writer.writerow([run["env"], run["algorithm"], run["seed"], run["cg_iters"], index + 1]
                                + [history[key][index] for key in HISTORY_KEYS])


def plot(out: str, runs: list[dict[str, Any]], envs: list[str]) -> str:
    """Per environment: the full step's measured KL / δ per iteration (left) and the learning curves (right)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from trpo_tf import plotting

    envs = [env_id for env_id in envs if any(run["env"] == env_id for run in runs)]
    colors = {"trpo": "tab:blue", "npg": "tab:red"}
    figure = Figure(figsize=(11, 3.2 * len(envs)), dpi=90)
    FigureCanvasAgg(figure)
    for row, env_id in enumerate(envs):
        kl_axes = figure.add_subplot(len(envs), 2, 2 * row + 1)
        return_axes = figure.add_subplot(len(envs), 2, 2 * row + 2)
        for algorithm in ALGORITHMS:
            group = [run for run in runs if run["env"] == env_id and run["algorithm"] == algorithm
                     and run["cg_iters"] == _preset_cg_iters(env_id)]
            for index, run in enumerate(group):
                history = run["history"]
                kl_axes.plot(np.arange(1, len(history["kl"]) + 1), np.asarray(history["kl_full_step"]) / run["max_kl"],
                             color=colors[algorithm], alpha=0.45, linewidth=0.7,
                             label=f"{algorithm.upper()} ({len(group)} seeds)" if index == 0 else None)
            if group:
                curves = [(np.asarray(run["history"]["timesteps"], float),
                           np.asarray(run["history"]["episode_return_mean"], float)) for run in group]
                curves = [(x[np.isfinite(y)], y[np.isfinite(y)]) for x, y in curves]
                grid, mean, lower, upper = plotting.aggregate(curves)
                return_axes.plot(grid, mean, color=colors[algorithm], label=f"{algorithm.upper()} (mean, min–max)")
                return_axes.fill_between(grid, lower, upper, color=colors[algorithm], alpha=0.2, linewidth=0)
        kl_axes.axhline(1.0, color="black", linestyle="--", linewidth=0.8, label="δ")
        kl_axes.set_yscale("log")
        kl_axes.set_title(f"{env_id}: KL at the full step / δ")
        kl_axes.set_xlabel("iteration")
        return_axes.set_title(f"{env_id}: training return (last 100 episodes)")
        return_axes.set_xlabel("timesteps")
        for axes in (kl_axes, return_axes):
            axes.grid(alpha=0.3)
            axes.legend(fontsize="small")
    figure.tight_layout()
    path = os.path.join(out, "npg_vs_trpo.png")
    figure.savefig(path)
    return path


def report(out: str, envs: list[str], command: str) -> str:
    """Rebuild summary.csv, summary.md, iterations.csv and the figure from ``out/runs``; returns the tables."""
    runs = load_runs(out)
    if not runs:
        raise SystemExit(f"no finished runs under {out}/runs")
    runs.sort(key=lambda run: (envs.index(run["env"]) if run["env"] in envs else len(envs), run["algorithm"],
                               run["cg_iters"], run["seed"]))
    rows = summary_rows(runs)
    with open(os.path.join(out, "summary.csv"), "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_iterations(out, runs)
    plot(out, runs, envs)
    tables = f"{main_table(rows, envs)}\n\nTRPO on {CG_ENV} by CG iterations:\n\n{cg_table(rows)}\n"
    with open(os.path.join(out, "summary.md"), "w", encoding="utf-8") as handle:
        handle.write(f"{tables}\nCommand: {command}\n")
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=ENVS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--cg-seeds", nargs="+", type=int, default=[0, 1, 2],
                        help="seeds of the CG-iterations runs on Hopper-v5")
    parser.add_argument("--timesteps", type=int, default=None,
                        help="cap every run at this many steps (default: each preset's length)")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results/npg_vs_trpo")
    parser.add_argument("--report", action="store_true", help="only rebuild the tables and figure from OUT/runs")
    parser.add_argument("--quick", action="store_true", help="Pendulum-v1, seed 0, 8,192 steps, 2 evaluation episodes")
    args = parser.parse_args()
    if args.quick:
        args.envs, args.seeds, args.cg_seeds, args.timesteps, args.eval_episodes = ENVS[:1], [0], [], 8192, 2
    command = "python benchmarks/npg_vs_trpo.py " + " ".join(sys.argv[1:])
    os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
    if not args.report:
        for env_id, algorithm, seed, cg_iters in jobs(args.envs, args.seeds, args.cg_seeds):
            path = os.path.join(args.out, "runs", run_name(env_id, algorithm, seed, cg_iters) + ".json")
            if os.path.exists(path):
                _check_budget(path, env_id, args.timesteps)
                continue
            run = train(env_id, algorithm, seed, cg_iters, args.timesteps, args.eval_episodes)
            with open(path + ".tmp", "w", encoding="utf-8") as handle:
                json.dump(run, handle)
            os.replace(path + ".tmp", path)
            print(f"{os.path.basename(path)[:-5]}: {run['timesteps']:,} steps, evaluation {run['eval_mean']:.1f}, "
                  f"full-step KL > δ in {kl_statistics(run)['full_over']:.0%} of iterations, "
                  f"{run['train_seconds']:.0f} s", flush=True)
    print(report(args.out, args.envs, command))


if __name__ == "__main__":
    main()
