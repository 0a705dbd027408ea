"""Learning curves from the ``progress.csv`` of training runs.

Runs whose directory names differ only by a ``-seed<N>`` suffix form one curve: their
values are interpolated onto a common timestep grid (where all of them have data) and
drawn as the mean with a band (min–max or ±1 standard deviation). Drawn with Matplotlib's
Agg canvas, without pyplot, so no display or global backend is involved.
"""

from __future__ import annotations

import collections
import csv
import math
import os
import re
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from trpo_tf.files import PROGRESS_FILE
from trpo_tf.errors import InputError

BANDS = ("minmax", "std")


def find_runs(paths: Sequence[str]) -> list[str]:
    """Run directories among ``paths``: each path that has a progress.csv, else its subdirectories that do.

    Raises ValueError naming a path that has none.
    """
    runs = []
    for path in paths:
        if os.path.isfile(path) and os.path.basename(path) == PROGRESS_FILE:
            path = os.path.dirname(path) or "."
        if os.path.isfile(os.path.join(path, PROGRESS_FILE)):
            runs.append(path)
            continue
        if not os.path.isdir(path):
            raise InputError(f"no such directory: {path}")
        found = sorted(os.path.join(path, name) for name in os.listdir(path)
                       if os.path.isfile(os.path.join(path, name, PROGRESS_FILE)))
        if not found:
            raise InputError(f"{path} has no {PROGRESS_FILE} (nor do its subdirectories)")
        runs.extend(found)
    return runs


def read_progress(run_dir: str, key: str = "episode_return_mean") -> tuple[np.ndarray, np.ndarray]:
    """(timesteps [K], values [K]) of column ``key`` from ``run_dir/progress.csv``, rows without a finite
    value dropped."""
    path = os.path.join(run_dir, PROGRESS_FILE)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "timesteps" not in reader.fieldnames or key not in reader.fieldnames:
            raise InputError(f"{path} has no 'timesteps' and '{key}' columns")
        rows = [(float(row["timesteps"]), _float(row[key])) for row in reader]
    points = np.array([row for row in rows if math.isfinite(row[1])], dtype=np.float64).reshape(-1, 2)
    return points[:, 0], points[:, 1]


def run_label(run_dir: str) -> str:
    """The curve the run in ``run_dir`` belongs to: its directory name without a ``-seed<N>`` suffix."""
    name = os.path.basename(os.path.normpath(os.path.abspath(run_dir)))
    return re.sub(r"[-_]seed\d+$", "", name)


def aggregate(curves: Sequence[tuple[np.ndarray, np.ndarray]], points: int = 200, band: str = "minmax"
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and band of several curves on a common grid: (grid, mean, lower, upper), each [points].

    The grid spans the timesteps all curves cover; each curve is linearly interpolated onto
    it. ``band`` is "minmax" (pointwise min and max) or "std" (mean ± one standard deviation).
    """
    if band not in BANDS:
        raise InputError(f"band must be one of {BANDS}, got {band!r}")
    curves = [(x, y) for x, y in curves if len(x)]
    if not curves:
        raise InputError("no run has any finite value to plot")
    start = max(float(x[0]) for x, _ in curves)
    stop = min(float(x[-1]) for x, _ in curves)
    if stop < start:
        raise InputError("the runs do not overlap in timesteps")
    grid = np.linspace(start, stop, points if stop > start else 1)
    values = np.stack([np.interp(grid, x, y) for x, y in curves])  # [runs, points]
    mean = values.mean(axis=0)
    if band == "minmax":
        return grid, mean, values.min(axis=0), values.max(axis=0)
    std = values.std(axis=0)
    return grid, mean, mean - std, mean + std


def plot(paths: Sequence[str], out: str, key: str = "episode_return_mean", band: str = "minmax",
         title: str | None = None, points: int = 200) -> str:
    """Draw the learning curves of the runs under ``paths`` into the image ``out``; returns ``out``.

    Args:
        paths: run directories, or directories of runs (see :func:`find_runs`).
        out: the image file to write.
        key: the ``progress.csv`` column to plot.
        band: the spread over seeds, ``"minmax"`` or ``"std"`` (±1 standard deviation).
        title: the plot's title (default: from the runs and the band).
        points: points of the common timestep grid each group is interpolated onto.
    """
    groups: dict[str, list[tuple[np.ndarray, np.ndarray]]] = collections.OrderedDict()
    for run_dir in find_runs(paths):
        groups.setdefault(run_label(run_dir), []).append(read_progress(run_dir, key))
    figure = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for label, curves in groups.items():
        grid, mean, lower, upper = aggregate(curves, points, band)
        count = sum(1 for x, _ in curves if len(x))
        line, = axes.plot(grid, mean, label=f"{label} ({count} run{'s' if count != 1 else ''})")
        if count > 1:
            axes.fill_between(grid, lower, upper, color=line.get_color(), alpha=0.25, linewidth=0)
    axes.set_xlabel("timesteps")
    axes.set_ylabel(key.replace("_", " "))
    axes.set_title(title or _default_title(groups, band))
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    figure.savefig(out)
    return out


def _default_title(groups: dict, band: str) -> str:
    several = any(len(curves) > 1 for curves in groups.values())
    spread = {"minmax": "min–max", "std": "±1 std"}[band]
    return "learning curves" + (f" (mean and {spread} over seeds)" if several else "")


def _float(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan

