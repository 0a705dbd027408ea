"""What the learning benchmarks keep across sittings: summary.csv (a row per finished run) and
curves.csv (a training curve per run); the statistics and the learning-curve figure they report.

The run directories (``runs/``) are not committed, so a benchmark that continues in a fresh
clone reads the rows it finished from summary.csv, and rewrites curves.csv from the run
directories it has while keeping, for the others, the curves the file already held.
"""

from __future__ import annotations

import csv
import os
from typing import Any

import numpy as np

from trpo_tf import plotting

Key = tuple[str, ...]  # a run's key columns as curves.csv holds them (strings)
VALUES = ["timesteps", "episode_return_mean"]


def read_summary(out: str) -> list[dict]:
    """The rows of ``out``/summary.csv (empty when absent), numbers typed: seed, timesteps and
    eval_episodes int; eval_mean, eval_std and seconds float; other columns as strings."""
    path = os.path.join(out, "summary.csv")
    if not os.path.isfile(path):
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return [dict(row, seed=int(row["seed"]), timesteps=int(row["timesteps"]), eval_mean=float(row["eval_mean"]),
                     eval_std=float(row["eval_std"]), eval_episodes=int(row["eval_episodes"]),
                     seconds=float(row["seconds"])) for row in csv.DictReader(handle)]


def read_curves(path: str, key_names: list[str]) -> dict[Key, tuple[np.ndarray, np.ndarray]]:
    """Key → (timesteps [K], training return [K]) from the curves.csv at ``path`` (empty when absent)."""
    points: dict[Key, list[tuple[float, float]]] = {}
    if os.path.isfile(path):
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                points.setdefault(tuple(row[name] for name in key_names), []).append(
                    (float(row["timesteps"]), float(row["episode_return_mean"])))
    return {key: (np.array([s for s, _ in curve]), np.array([r for _, r in curve])) for key, curve in points.items()}


def write_curves(path: str, key_names: list[str], run_dirs: dict[Key, str]) -> None:
    """Rewrite curves.csv at ``path`` with a curve for each key of ``run_dirs`` (in that order): read from
    its run directory when it exists, else kept from the file; keys with neither are left out."""
    curves = read_curves(path, key_names)
    with open(path + ".tmp", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(key_names + VALUES)
        for key, run_dir in run_dirs.items():
            curve = plotting.read_progress(run_dir) if os.path.isdir(run_dir) else curves.get(key)
            if curve is not None:
                writer.writerows([*key, int(s), float(r)] for s, r in zip(*curve))
    os.replace(path + ".tmp", path)


def interquartile_mean(values: np.ndarray) -> np.ndarray:
    """IQM over the last axis: the mean of the sorted values [k : n − k], k = ⌊n / 4⌋. [..., n] → [...]."""
    ordered = np.sort(np.asarray(values, dtype=np.float64), axis=-1)
    trim = ordered.shape[-1] // 4
    return ordered[..., trim: ordered.shape[-1] - trim].mean(axis=-1)


def bootstrap_interval(values: list[float], resamples: int = 10_000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the IQM of ``values`` (runs resampled with replacement)."""
    data = np.asarray(values, dtype=np.float64)
    draws = np.random.default_rng(seed).integers(0, len(data), size=(resamples, len(data)))
    estimates = interquartile_mean(data[draws])
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return float(low), float(high)


def plot_learning_curves(curves: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]], rows: list[dict],
                         envs: list[str], published: dict[str, float], path: str, columns: int = 2) -> str:
    """A grid of panels, one per environment, written to ``path`` (PNG); returns ``path``.

    Each panel draws two different quantities and says so in its legend: the training return (mean
    over seeds of the last 100 training episodes, sampled actions; min–max band), and at the end of
    training each seed's deterministic evaluation (``rows``: summary rows with env, seed, timesteps
    and eval_mean) as points, next to the published figure (``published[env]``, a deterministic
    evaluation at 1M steps) as a marker. Published figures are evaluations, so they are compared
    with the points, not with the curve.

    Args:
        curves: (env, seed) → (timesteps [K], training return [K]).
        rows: the runs' summary rows.
        envs: the environments to draw, in order (those without curves are left out).
        published: env → published deterministic evaluation return at 1M steps.
        path: the PNG to write.
        columns: panels per row.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    envs = [env for env in envs if any((row["env"], row["seed"]) in curves for row in rows if row["env"] == env)]
    grid_rows = max(1, -(-len(envs) // columns))
    figure = Figure(figsize=(10, 3.2 * grid_rows + 0.6), dpi=110)
    FigureCanvasAgg(figure)
    handles: dict[str, Any] = {}
    for index, env in enumerate(envs):
        axes = figure.add_subplot(grid_rows, columns, index + 1)
        group = [row for row in rows if row["env"] == env and (env, row["seed"]) in curves]
        grid, mean, lower, upper = plotting.aggregate([curves[env, row["seed"]] for row in group])
        handles["training return: mean of the seeds, min–max (last 100 episodes, sampled actions)"], = axes.plot(
            grid, mean, color="tab:blue")
        axes.fill_between(grid, lower, upper, color="tab:blue", alpha=0.2, linewidth=0)
        handles["final evaluation of each seed (10 episodes, deterministic actions)"] = axes.scatter(
            [row["timesteps"] for row in group], [row["eval_mean"] for row in group], color="tab:green",
            marker="o", s=22, zorder=3)
        if env in published:
            handles["published TRPO, deterministic evaluation at 1M steps"] = axes.scatter(
                [1_000_000], [published[env]], facecolors="none", edgecolors="black", marker="*", s=160,
                linewidths=1.2, zorder=4)
        axes.set_title(f"{env} ({len(group)} seeds)", fontsize=11)
        axes.set_xlabel("timesteps", fontsize=9)
        axes.set_ylabel("return", fontsize=9)
        axes.tick_params(labelsize=8)
        axes.grid(alpha=0.3)
    figure.legend(list(handles.values()), list(handles), loc="upper center", ncol=1, fontsize=9, frameon=False)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.75 / (3.2 * grid_rows + 0.6)))
    figure.savefig(path, metadata={"Software": None})
    return path
