"""Write the documentation's Benchmarks page from the files in benchmarks/results/.

    python benchmarks/report.py            # rewrite docs/benchmarks.md, its figures and the shipped-policy table
    python benchmarks/report.py --check    # exit 1, naming the files, when any of them is out of date

Every number on the page is read or computed here from a results file; nothing is typed in. Each
section names its command, the commit of the code that ran and the machine once, from
``benchmarks/results/provenance.yaml``. Figures go to ``docs/assets/benchmarks/``: the learning
curves and the speed chart are drawn from the results; the NPG and Atari figures are copied as the
benchmarks drew them. Each figure's data files are hashed into the page, so ``--check`` (and the
test that runs it) sees a figure drawn from results that have changed since. The table of shipped
policies (``docs/generated/shipped_policies.md``, included by the Exporting page) comes from the
metadata of each policy in ``savedmodels/``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import statistics
import sys
from typing import Any, Callable

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from records import bootstrap_interval, interquartile_mean, plot_learning_curves, read_curves, read_summary  # noqa: E402

RESULTS = os.path.join(ROOT, "benchmarks", "results")
PAGE = os.path.join(ROOT, "docs", "benchmarks.md")
FIGURES = os.path.join(ROOT, "docs", "assets", "benchmarks")
SHIPPED = os.path.join(ROOT, "docs", "generated", "shipped_policies.md")
SAVEDMODELS = os.path.join(ROOT, "savedmodels")

MUJOCO = ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Swimmer-v5", "Ant-v5", "Humanoid-v5"]
# Published 1M-step TRPO results with deterministic evaluation: rl-baselines3-zoo's tuned sb3-contrib
# runs (one run each, -v3 environments); Humanoid: Tianshou (the best of its 10-seed averages).
PUBLISHED = {"HalfCheetah-v5": 1785, "Hopper-v5": 3618, "Walker2d-v5": 4933, "Swimmer-v5": 366, "Ant-v5": 4982,
             "Humanoid-v5": 810}


# --------------------------------------------------------------------------- reading results

def results_path(*parts: str) -> str:
    return os.path.join(RESULTS, *parts)


def provenance() -> dict[str, Any]:
    with open(results_path("provenance.yaml"), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def markdown_tables(path: str) -> list[str]:
    """The Markdown tables in a text file (runs of lines that start with '|'), in order."""
    tables, current = [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("|"):
                current.append(line.rstrip("\n"))
            elif current:
                tables.append("\n".join(current))
                current = []
    if current:
        tables.append("\n".join(current))
    return tables


def drop_columns(markdown: str, names: set[str]) -> str:
    """A Markdown table without the columns whose header is in ``names``."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in markdown.splitlines()]
    keep = [index for index, name in enumerate(rows[0]) if name not in names]
    return "\n".join("| " + " | ".join(row[index] for index in keep) + " |" for row in rows)


def rounds(path: str) -> dict[tuple[str, str], list[float]]:
    """(environment, setting) → the value of each round, from a compare_sb3 output's 'round N' lines."""
    found: dict[tuple[str, str], list[float]] = {}
    pattern = re.compile(r"^round \d+\s+(\S+)\s+(.+?):\s+([\d.]+) (?:steps/s|s)$")
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            match = pattern.match(line.strip())
            if match:
                found.setdefault((match.group(1), match.group(2)), []).append(float(match.group(3)))
    return found


def fingerprint(*paths: str) -> str:
    """First 12 hex digits of the SHA-256 of the files' contents, in order."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()[:12]


# --------------------------------------------------------------------------- formatting

def number(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def table(header: list[str], rows: list[list[str]], align: str = "") -> str:
    """A Markdown table; ``align`` is one character per column, 'r' for right-aligned ('' all left)."""
    rule = ["---:" if (align[i:i + 1] == "r") else "---" for i in range(len(header))]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [header, rule] + rows)


def recorded(key: str, sources: dict[str, Any]) -> str:
    """The line under a table: command, commit, machine (and a note) of result set ``key``."""
    entry = sources[key]
    text = f"*Recorded with* `{' '.join(entry['command'].split())}` *at commit* {entry['commit']}, *on* {entry['machine']}."
    if entry.get("note"):
        text += " " + " ".join(entry["note"].split())
    return text


def figure(name: str, alt: str, *data: str) -> str:
    """An image line for docs/assets/benchmarks/``name`` and a comment with its data's fingerprint."""
    sources = ", ".join(os.path.relpath(path, ROOT) for path in data)
    return (f"<!-- {name}: drawn from {sources}, sha256 {fingerprint(*data)} -->\n"
            f"![{alt}](assets/benchmarks/{name}){{ .figure }}")


# --------------------------------------------------------------------------- sections

def five_seed_section(sources: dict[str, Any], figures: dict[str, Callable[[str], None]]) -> str:
    out = results_path("mujoco_five_seeds")
    rows = read_summary(out)
    seeds = sorted({row["seed"] for row in rows})
    summary_rows, seed_rows = [], []
    for env in MUJOCO:
        group = sorted((row for row in rows if row["env"] == env), key=lambda row: row["seed"])
        if not group:
            continue
        returns = [row["eval_mean"] for row in group]
        low, high = bootstrap_interval(returns)
        summary_rows.append([env, number(statistics.median(returns)),
                             number(min(returns)), f"{number(float(interquartile_mean(returns)))} "
                             f"[{number(low)} – {number(high)}]", f"{number(min(returns))} – {number(max(returns))}",
                             number(PUBLISHED[env]), number(statistics.mean(row["seconds"] for row in group) / 60, 1)])
        seed_rows.append([env] + [f"{number(row['eval_mean'], 1)} ± {number(row['eval_std'], 1)}" for row in group])
    curves = {(env, int(seed)): curve for (env, seed), curve in
              read_curves(os.path.join(out, "curves.csv"), ["env", "seed"]).items()}
    figures["learning_curves.png"] = lambda path: plot_learning_curves(curves, rows, MUJOCO, PUBLISHED, path)
    return "\n\n".join([
        "## Learning: MuJoCo, five seeds",
        f"Each MuJoCo task trained with its preset for 1M steps (in whole iterations: "
        f"{number(min(row['timesteps'] for row in rows))}–{number(max(row['timesteps'] for row in rows))}) "
        f"with seeds {min(seeds)}–{max(seeds)}; every final policy evaluated over 10 episodes with deterministic "
        "actions. Per environment: the median, the minimum, and the interquartile mean (IQM, the mean of the "
        "middle half of the seeds) with a 95% percentile-bootstrap interval over runs.",
        table(["environment", "median", "minimum", "IQM [95% interval]", "range", "published", "minutes a run"],
              summary_rows, "lrrrrrr"),
        "Each seed's evaluation, mean ± standard deviation over its 10 episodes:",
        table(["environment"] + [f"seed {seed}" for seed in seeds], seed_rows, "l" + "r" * len(seeds)),
        recorded("mujoco_five_seeds", sources),
        "**Published** is a deterministic evaluation after 1M steps of TRPO: rl-baselines3-zoo's tuned "
        "sb3-contrib runs (one run each, on the `-v3` environments; ours are gymnasium's `-v5`), and for "
        "Humanoid Tianshou's best 10-seed average. For comparison, sb3-contrib's documentation reports over 3 "
        "seeds (`-v3`): HalfCheetah 1,803, Hopper 3,372, Walker2d 4,502, Ant 3,554, Swimmer 359; Tianshou "
        "(the maximum over training of the 10-seed average test return within 1M steps, `-v3`): HalfCheetah "
        "4,471, Walker2d 3,827, Hopper 2,046, Ant 2,867, Humanoid 810. Ant-v3's contact forces were all zero "
        "in the MuJoCo of that time (openai/gym issue #1541); the Ant-v5 and Humanoid-v5 presets leave them "
        "out of the observations (`env_kwargs: {include_cfrc_ext_in_observation: false}`), and the reward, "
        "contact cost included, is `-v5`'s.",
        figure("learning_curves.png", "MuJoCo learning curves over five seeds, with final evaluations and "
               "published figures", os.path.join(out, "curves.csv"), os.path.join(out, "summary.csv")),
        "The curves are the **training** return (the last 100 episodes, sampled actions): mean over the seeds "
        "and min–max band. The points at the end are each seed's **deterministic evaluation**, the quantity the "
        "published figures (hollow stars, at 1M steps) report; the evaluation is higher than the training "
        "return, since it acts with the distribution's mean or mode. Runs repeat for a seed on a given "
        "machine and thread count, not across them, and tasks whose outcome is bimodal (Swimmer's two "
        "strokes, HalfCheetah's gaits with a Gaussian policy) move a median by whole modes: hence five seeds, "
        "the minimum and the IQM. What was tuned, and why, is written in each preset file "
        "(`trpo_tf/presets/*.yaml`).",
    ])


def humanoid_section(sources: dict[str, Any]) -> str:
    rows = sorted(read_summary(results_path("mujoco_five_seeds", "levers", "Humanoid-v5-3M-workers")),
                  key=lambda row: row["seed"])
    returns = [row["eval_mean"] for row in rows]
    cells = [[str(row["seed"]), f"{row['timesteps']:,}", f"{number(row['eval_mean'], 1)} ± {number(row['eval_std'], 1)}",
              number(row["seconds"] / 60, 1)] for row in rows]
    return "\n\n".join([
        "### Humanoid-v5 at 3M steps",
        f"The Humanoid-v5 preset is still climbing at 1M steps. Trained for 3M steps with two sampling workers, "
        f"its seeds scored a median of {number(statistics.median(returns))} (minimum {number(min(returns))}):",
        table(["seed", "steps", "evaluation (10 episodes)", "minutes"], cells, "rrrr"),
        recorded("humanoid_3m", sources),
    ])


def distribution_section(sources: dict[str, Any]) -> str:
    presets = read_summary(results_path("mujoco_five_seeds"))
    rows = []
    for env in ("HalfCheetah-v5", "Ant-v5"):
        gaussian = [row["eval_mean"] for row in read_summary(results_path("mujoco_five_seeds", "levers",
                                                                          f"{env}-gaussian"))]
        beta = [row["eval_mean"] for row in presets if row["env"] == env]
        rows.append([env] + [f"{number(statistics.median(v))} [{number(min(v))} – {number(max(v))}]"
                             for v in (gaussian, beta)])
    comparison = read_summary(results_path("beta_vs_gaussian"))
    with open(results_path("beta_vs_gaussian", "summary.csv"), newline="", encoding="utf-8") as handle:
        kinds = [row["distribution"] for row in csv.DictReader(handle)]
    cells = []
    for env in dict.fromkeys(row["env"] for row in comparison):
        line = [env, f"{next(row['timesteps'] for row in comparison if row['env'] == env):,}"]
        for kind in ("beta", "gaussian"):
            values = [row["eval_mean"] for row, k in zip(comparison, kinds) if row["env"] == env and k == kind]
            line.append(" / ".join(number(v, 1) for v in values) + f" (median {number(statistics.median(values))})")
        cells.append(line)
    return "\n\n".join([
        "## Beta and Gaussian policies",
        "The HalfCheetah-v5 and Ant-v5 presets are [Beta policies](observations.md#beta-policies); over five "
        "seeds, the same presets with the Gaussian scored (evaluation, median [min – max]):",
        table(["environment", "Gaussian, 5 seeds", "Beta (the preset), 5 seeds"], rows, "lrr"),
        recorded("preset_distributions", sources),
        "An earlier comparison on three seeds (evaluation of seeds 0 / 1 / 2):",
        table(["environment", "steps", "Beta", "Gaussian"], cells, "lrrr"),
        recorded("beta_vs_gaussian", sources),
        "On HalfCheetah the Beta policy is far ahead on every seed; bounded actions with no clipping are one "
        "plausible reason (its best gaits push the torques to their limits, where a clipped Gaussian's "
        "log-probability no longer describes the action taken), which these runs do not test. On Hopper the two "
        "are within each other's seed spread, and on Pendulum the Beta policy learns but ends behind the "
        "Gaussian.",
    ])


def npg_section(sources: dict[str, Any], copies: dict[str, str]) -> str:
    path = results_path("npg_vs_trpo", "summary.md")
    by_mode, by_cg = markdown_tables(path)
    copies["npg_vs_trpo.png"] = results_path("npg_vs_trpo", "npg_vs_trpo.png")
    return "\n\n".join([
        "## NPG and TRPO",
        "Both modes ([The algorithm](algorithm.md#npg-and-trpo)) with the presets of Pendulum-v1 (200k steps), "
        "Hopper-v5 and HalfCheetah-v5 (1M steps) on seeds 0, 1 and 2 (three seeds per row), every final policy evaluated over 10 "
        "episodes. \"Full step\" is θ<sub>old</sub> + s before any backtracking (NPG's taken step); \"KL\" is the "
        "mean KL(π<sub>old</sub> ‖ π<sub>new</sub>) measured on the batch; \"predicted\" is ½ sᵀHs with the "
        "undamped H.",
        drop_columns(by_mode, {"seeds", "steps"}),
        "TRPO on Hopper-v5 by conjugate-gradient iterations (seed 0; 10 iterations is the preset's, with three "
        "seeds):",
        by_cg,
        recorded("npg_vs_trpo", sources),
        figure("npg_vs_trpo.png", "KL at the full step over δ per iteration, and training returns, NPG and TRPO",
               results_path("npg_vs_trpo", "npg_vs_trpo.png")),
        "At these settings the quadratic model is accurate and NPG's full step rarely leaves the trust region: "
        "the measured KL at the full step matches ½ sᵀHs, and the line search seldom backtracks, so the two "
        "modes end alike. Early in training the damping takes up to half of δ, so the full step's KL is about "
        "0.5–0.7 δ; it rises to about δ as the policy narrows. What matters is the conjugate-gradient solve: "
        "with 1 or 3 iterations the residual stays large, the full step breaks δ far more often, and the runs "
        "end lower. One seed per CG setting and three per mode cannot rank the returns; the KL columns are what "
        "these runs measure well.",
    ])


def speed_section(sources: dict[str, Any], figures: dict[str, Callable[[str], None]]) -> str:
    matched_path = results_path("compare_sb3.txt")
    matched = markdown_tables(matched_path)[-1]
    best = markdown_tables(results_path("compare_sb3_best.txt"))[-1]
    end_to_end = markdown_tables(results_path("compare_sb3_end_to_end.txt"))[-1]
    measured = rounds(matched_path)
    figures["speed.png"] = lambda path: plot_speed(measured, path)
    minatar = hvp_table(results_path("hvp_minatar.txt"))
    nature = hvp_table(results_path("hvp_nature_cnn.txt"))
    return "\n\n".join([
        "## Speed",
        "`benchmarks/compare_sb3.py` trains trpo_tf and sb3-contrib's TRPO at matched settings — 2,048 steps "
        "per iteration, one environment, 64×64 tanh networks, 15 CG iterations, damping 0.1, line search "
        "0.8 × 10, δ 0.01, 10 value epochs of minibatches of 128, γ 0.99, λ 0.95 — alternating the libraries "
        "(install the `bench` extra: PyTorch CPU and sb3-contrib). Steps per second of whole training, "
        "sampling and updates together; \"raw env\" is one environment stepped with random actions; GN is "
        "`hvp_method=gauss_newton`.",
        matched,
        recorded("compare_sb3", sources),
        figure("speed.png", "Training steps per second, trpo_tf and sb3-contrib, against the raw environment",
               matched_path),
        "**Each library at its fastest.** `--best` runs each library at every setting it offers for the same "
        "2,048 steps per iteration and networks — trpo_tf over environments, workers and `hvp_method`; "
        "sb3-contrib over `DummyVecEnv` and `SubprocVecEnv` with up to 32 environments — and keeps each one's "
        "fastest median:",
        best,
        recorded("compare_sb3_best", sources),
        "**End to end.** `--end-to-end` times a fresh `python` process that imports the library, builds the "
        "agent at the matched settings and trains 40,960 steps, as a script would; at this length the import, "
        "building the agent and the first iteration's compilation are a large share:",
        end_to_end,
        recorded("compare_sb3_end_to_end", sources),
        "### The policy step with a CNN",
        "`benchmarks/hvp.py` times one H·v and one whole policy step (10 CG iterations, line search) on 2,048 "
        "random frames, for each `hvp_method` and `fisher_fraction`. MinAtar's 10×10 grids through the small CNN:",
        minatar,
        recorded("hvp_minatar", sources),
        "ALE's 4×84×84 frames through the Nature CNN:",
        nature,
        recorded("hvp_nature_cnn", sources),
        "The convolutions dominate, so `hvp_method=\"gauss_newton\"` with `fisher_fraction=0.2` (H·v on every "
        "fifth frame, as OpenAI Baselines does) is the setting to start from for Atari. The other scripts in "
        "`benchmarks/` measure start-up (`startup.py`), serving latency (`serving_latency.py`), TFLite and ONNX "
        "agreement with the SavedModel (`tflite_agreement.py`, `onnx_parity.py`) and H·v on MuJoCo batches "
        "(`hvp.py`); their output is printed, not kept here.",
    ])


def hvp_table(path: str) -> str:
    """The fixed-width output of benchmarks/hvp.py as a Markdown table."""
    with open(path, encoding="utf-8") as handle:
        lines = [line.split() for line in handle if line.strip()]
    header, rows = lines[0], lines[1:]
    names = {"samples": "samples", "method": "`hvp_method`", "fisher": "`fisher_fraction`", "H·v": "one H·v",
             "step": "one policy step", "max": "largest relative difference to forward-over-backward"}
    cells = []
    for row in rows:
        hvp_ms, step_ms = float(row[3]), float(row[4])
        cells.append([row[0], row[1], row[2], seconds(hvp_ms), seconds(step_ms), row[5]])
    del header
    return table([names[key] for key in ("samples", "method", "fisher", "H·v", "step", "max")], cells, "rllrrr")


def seconds(milliseconds: float) -> str:
    return f"{milliseconds / 1000:,.2f} s" if milliseconds >= 1000 else f"{milliseconds:,.1f} ms"


def plot_speed(measured: dict[tuple[str, str], list[float]], path: str) -> None:
    """Bars of the median steps/s per environment and setting, on a log scale."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    envs = list(dict.fromkeys(env for env, _ in measured))
    settings = list(dict.fromkeys(setting for _, setting in measured))
    labels = {"trpo_tf": "trpo_tf", "trpo_tf GN": "trpo_tf, Gauss–Newton H·v",
              "trpo_tf GN 4 envs": "trpo_tf, Gauss–Newton H·v, 4 environments", "sb3-contrib": "sb3-contrib",
              "raw env": "the environment alone (random actions)"}
    figure = Figure(figsize=(10, 4.2), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    width = 0.8 / len(settings)
    for index, setting in enumerate(settings):
        values = [statistics.median(measured[env, setting]) for env in envs]
        axes.bar([e + (index - (len(settings) - 1) / 2) * width for e in range(len(envs))], values, width,
                 label=labels.get(setting, setting), color="lightgray" if setting == "raw env" else None,
                 edgecolor="gray" if setting == "raw env" else None)
    axes.set_xticks(range(len(envs)), envs)
    axes.set_yscale("log")
    axes.set_ylabel("steps per second (median of 3 rounds)")
    axes.grid(axis="y", alpha=0.3, which="both")
    axes.legend(fontsize=8, loc="upper left", ncol=2)
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})


def scaling_section(sources: dict[str, Any], figures: dict[str, Callable[[str], None]]) -> str:
    path = results_path("scaling", "scaling.json")
    with open(path, encoding="utf-8") as handle:
        scaling = json.load(handle)
    cells = [["local processes" if row["backend"] == "local" else "Ray actors", str(row["workers"]),
              number(row["steps_per_second"]), f"{row['efficiency']:.2f}"] for row in scaling["rows"]]
    figures["scaling.png"] = lambda out: plot_scaling(scaling["rows"], out)
    memory_path = results_path("worker_memory", "worker_memory.json")
    with open(memory_path, encoding="utf-8") as handle:
        memory = json.load(handle)
    first = " and ".join(f"{value:.1f}" for value in memory["first_mib"])
    last = " and ".join(f"{value:.1f}" for value in memory["last_mib"])
    growth = " and ".join(f"{value:+.3f}" for value in memory["growth_mib_per_100_iterations"])
    mapped = "no" if not any(memory["tensorflow_mapped"]) else "a"
    return "\n\n".join([
        "## Scaling out",
        f"`benchmarks/scaling.py` samples an environment padded to cost {scaling['step_ms']:g} ms a step "
        f"(Pendulum-v1 that also sleeps: a stand-in for a slow simulator that needs no core, so "
        f"{scaling['cpus']} cores can host 8 workers), {scaling['n_envs']} environments, {scaling['steps']:,} "
        "steps per collection, with 1, 2, 4 and 8 workers. Efficiency is steps/s ÷ (workers × the same "
        "backend's steps/s with one worker).",
        table(["backend", "workers", "steps/s", "efficiency"], cells, "lrrr"),
        recorded("scaling", sources),
        figure("scaling.png", "Sampling steps per second against workers, local processes and Ray actors", path),
        f"**Worker memory.** `benchmarks/worker_memory.py` ({memory['env']}, {memory['workers']} workers, "
        f"{memory['iterations']} iterations of {memory['steps_per_iteration']:,} steps) reads each worker's "
        f"resident memory after every iteration: {first} MiB after the first, {last} MiB after the last, a "
        f"growth over the second half of {growth} MiB per 100 iterations, and {mapped} TensorFlow library "
        "mapped into either worker.",
        recorded("worker_memory", sources),
    ])


def plot_scaling(rows: list[dict[str, Any]], path: str) -> None:
    """Steps/s against workers for each backend, with the ideal line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for backend, label in (("local", "local processes"), ("ray", "Ray actors")):
        points = [(row["workers"], row["steps_per_second"]) for row in rows if row["backend"] == backend]
        axes.plot([w for w, _ in points], [s for _, s in points], marker="o", label=label)
    one = next(row["steps_per_second"] for row in rows if row["workers"] == 1)
    workers = sorted({row["workers"] for row in rows})
    axes.plot(workers, [one * w for w in workers], color="gray", linestyle="--", label="ideal (workers × one worker)")
    axes.set_xlabel("workers")
    axes.set_ylabel("sampling steps per second")
    axes.set_xticks(workers)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})


def atari_section(sources: dict[str, Any], copies: dict[str, str]) -> str:
    copies["atari.png"] = results_path("atari", "atari.png")
    return "\n\n".join([
        "## Atari",
        "`benchmarks/atari.py` (the `bench`, `atari` and `minatar` extras) trains trpo_tf and sb3-contrib's "
        "TRPO on MinAtar Breakout-v1 (the small CNN, 1M steps a run) and on ALE Breakout-v5 with "
        "`AtariPreprocessing` and 4 stacked frames (the Nature CNN), with the same CNNs, separate policy and "
        "value CNNs, no hidden layers after them and the same update (8 environments × 256 steps, δ 0.01, 10 "
        "CG iterations, 10 value epochs of 128). Deterministic evaluation over 10 episodes, training steps per "
        "second and peak resident memory:",
        markdown_tables(results_path("atari", "summary.md"))[0],
        recorded("atari", sources),
        figure("atari.png", "MinAtar and ALE Breakout training returns, trpo_tf and sb3-contrib",
               results_path("atari", "atari.png")),
        "On MinAtar the two libraries' returns overlap across seeds. At the ALE budget neither learns: the "
        "training return stays near a random policy's, and the deterministic evaluation is 0 for both (the most "
        "likely action is never FIRE, so the ball is never served). With a CNN both libraries spend the "
        "iteration on the same convolutions, so trpo_tf's lead in speed is smaller than on MuJoCo.",
    ])


def shipped_policies() -> str:
    """The table of savedmodels/: each model's highest version, its evaluation and how it was trained."""
    rows, commands = [], []
    for name in sorted(os.listdir(SAVEDMODELS)):
        folder = os.path.join(SAVEDMODELS, name)
        versions = sorted(int(v) for v in os.listdir(folder) if v.isdigit())
        with open(os.path.join(folder, str(versions[-1]), "assets", "metadata.json"), encoding="utf-8") as handle:
            metadata = json.load(handle)
        evaluation = metadata["evaluation"]
        config = metadata["config"]
        kind = metadata["action_space"]["type"]  # exports older than the Beta policy record no distribution
        policy = config.get("action_distribution", "gaussian").capitalize() if kind == "Box" else kind
        hidden = "×".join(str(width) for width in config["policy_hidden"])
        rows.append([f"`{name}/{versions[-1]}`", policy, hidden, f"{metadata['timesteps']:,}", str(metadata["seed"]),
                     f"{number(evaluation['mean_return'], 1)} ± {number(evaluation['std_return'], 1)}"])
        commands.append(f"- `{name}/{versions[-1]}`: `{metadata['command']}`")
    return (table(["policy (latest version)", "actions", "policy network", "steps", "seed", "evaluation (10 episodes)"],
                  rows, "llrrrr") + "\n\nThe commands that trained them, as their metadata records:\n\n" + "\n".join(commands))


# --------------------------------------------------------------------------- the page

def build() -> tuple[dict[str, str], dict[str, Callable[[str], None]], dict[str, str]]:
    """(text files by path, figures to draw by file name, figures to copy by file name → source)."""
    sources = provenance()
    figures: dict[str, Callable[[str], None]] = {}
    copies: dict[str, str] = {}
    sections = [
        "# Benchmarks",
        "<!-- Generated by benchmarks/report.py from benchmarks/results/: edit that script, not this page. -->",
        "How trpo_tf learns and how fast it is, as measured by the scripts in `benchmarks/` and kept in "
        "`benchmarks/results/`. Every table and figure on this page is generated from those files by "
        "`python benchmarks/report.py`. Learning runs repeat for a seed on a given machine and thread count; "
        "speed depends on the machine, so each table says where it was measured.",
        five_seed_section(sources, figures),
        humanoid_section(sources),
        distribution_section(sources),
        npg_section(sources, copies),
        speed_section(sources, figures),
        scaling_section(sources, figures),
        atari_section(sources, copies),
    ]
    texts = {PAGE: "\n\n".join(sections) + "\n", SHIPPED: shipped_policies() + "\n"}
    return texts, figures, copies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a file is out of date")
    args = parser.parse_args()
    texts, figures, copies = build()
    if args.check:
        stale = [os.path.relpath(path, ROOT) for path, text in texts.items()
                 if not os.path.isfile(path) or open(path, encoding="utf-8").read() != text]
        stale += [os.path.join("docs", "assets", "benchmarks", name) for name in list(figures) + list(copies)
                  if not os.path.isfile(os.path.join(FIGURES, name))]
        stale += [os.path.join("docs", "assets", "benchmarks", name) for name, source in copies.items()
                  if os.path.isfile(os.path.join(FIGURES, name))
                  and fingerprint(source) != fingerprint(os.path.join(FIGURES, name))]
        for path in stale:
            print(f"out of date: {path} (run python benchmarks/report.py)")
        return 1 if stale else 0
    os.makedirs(FIGURES, exist_ok=True)
    for path, text in texts.items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    for name, draw in figures.items():
        draw(os.path.join(FIGURES, name))
    for name, source in copies.items():
        with open(source, "rb") as handle, open(os.path.join(FIGURES, name), "wb") as target:
            target.write(handle.read())
    print(f"wrote {os.path.relpath(PAGE, ROOT)}, {os.path.relpath(SHIPPED, ROOT)} and "
          f"{len(figures) + len(copies)} figures in {os.path.relpath(FIGURES, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
