"""What the learning benchmarks keep across sittings: summary.csv (a row per finished run) and
curves.csv (a training curve per run).

The run directories (``runs/``) are not committed, so a benchmark that continues in a fresh
clone reads the rows it finished from summary.csv, and rewrites curves.csv from the run
directories it has while keeping, for the others, the curves the file already held.
"""

from __future__ import annotations

import csv
import os

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
