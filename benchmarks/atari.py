"""Atari with a CNN: trpo_tf against sb3-contrib's TRPO on MinAtar Breakout and ALE Breakout.

    pip install -e '.[bench,atari]'
    python benchmarks/atari.py --task minatar --seeds 0 1 2        # 1M steps a run
    python benchmarks/atari.py --task ale --seeds 0                # ALE: 24,576 steps, 30 min here
    python benchmarks/atari.py --task minatar --timesteps 20480 --seeds 0 --out /tmp/atari   # smoke run
    python benchmarks/atari.py --report                            # tables and figure from the runs

Tasks, the same environments for both libraries:

- ``minatar``: MinAtar's Breakout-v1 (Young & Tian, 2019), 10×10×4 bool grids, 3 actions, one
  life; episodes capped at 10,000 steps. CNN: the small one (16 3×3 convolutions, a dense
  ReLU layer of 128), written for sb3-contrib as a features extractor.
- ``ale``: ALE Breakout-v5 (sticky actions) with gymnasium's ``AtariPreprocessing`` (30 no-ops,
  frame skip 4, 84×84 grayscale, no life-loss terminals, unscaled) and
  ``FrameStackObservation(4)``: 4×84×84 uint8, 4 actions. CNN: Nature DQN (Mnih et al., 2015),
  sb3's ``NatureCNN``. Rewards are not clipped (in either library); evaluation episodes are
  capped at 4,500 steps (18,000 frames), because a deterministic policy that never presses
  FIRE would wait out the game's 27,000. The default budget, 24,576 steps (12 iterations), is
  what fits the issue's 30 minutes of training on this 2-core machine: trpo_tf's seed 0 took
  1,815 s (13.5 steps/s; the Nature-CNN policy step is ~85 s of each iteration,
  ``benchmarks/results/hvp_nature_cnn.txt``).

Both libraries: 8 environments × 256 steps = 2048 per iteration, no hidden layers after the
CNN, separate CNNs for policy and value, max KL 0.01, 10 CG iterations, damping 0.1,
line-search factor 0.8 with 10 steps, 10 value epochs of minibatches of 128 with Adam 1e-3,
γ 0.99, λ 0.95, normalized advantages, on the CPU (the numbers of ``sb3_settings.UPDATE``);
trpo_tf computes H·v by ``gauss_newton`` (the same matrix, faster; ``benchmarks/hvp.py``).

Each run (library, task, seed) is a process of its own (``--run``), the libraries alternating
seed by seed, so that each one's peak resident memory is its own. A run writes
``OUT/runs/<library>-<task>-seed<S>.json`` (evaluation returns over ``--eval-episodes``
deterministic episodes on seeds 1000 + i, training steps/s, peak resident memory, the
learning curve); a run whose file exists is not run again. ``OUT/summary.md`` holds the table
(median and range over seeds of the deterministic evaluation, and of the training return: the
mean of the last 100 training episodes, actions sampled, the curve's last point) and
``OUT/atari.png`` the learning curves. The training return is the one to read where the
deterministic policy stalls, e.g. an early Breakout policy whose most likely action is not FIRE.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from sb3_settings import UPDATE

LIBRARIES = ["trpo_tf", "sb3-contrib"]
N_ENVS, STEPS_PER_ITERATION, CG_ITERS = 8, 2048, 10
EVAL_SEED = 1000


@dataclasses.dataclass(frozen=True)
class Task:
    env_id: str  # registered below, so both libraries build it by id
    title: str
    timesteps: int  # default budget of a run
    training_cap: int | None  # episode step limit while training
    eval_cap: int  # episode step limit while evaluating


TASKS = {"minatar": Task("AtariBench/MinAtarBreakout-v0", "MinAtar Breakout-v1", 1_000_000, 10_000, 10_000),
         "ale": Task("AtariBench/ALEBreakout-v0", "ALE Breakout-v5", 24_576, None, 4_500)}


def make_env(task: str) -> gym.Env:
    """The task's environment, without a step limit (see :class:`Task`)."""
    if task == "minatar":
        from minatar import gym as minatar_gym

        if "MinAtar/Breakout-v1" not in gym.registry:
            minatar_gym.register_envs()
        return gym.make("MinAtar/Breakout-v1").unwrapped
    import ale_py

    gym.register_envs(ale_py)
    env = gym.make("ALE/Breakout-v5", frameskip=1)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84, terminal_on_life_loss=False,
                                          grayscale_obs=True, scale_obs=False)
    return gym.wrappers.FrameStackObservation(env, 4)


for _name, _task in TASKS.items():
    if _task.env_id not in gym.registry:
        gym.register(_task.env_id, entry_point=lambda task=_name: make_env(task), max_episode_steps=_task.training_cap)


def evaluate(act: Callable[[Any], int], task: str, episodes: int) -> list[float]:
    """Undiscounted returns of ``episodes`` episodes, episode i reset with seed 1000 + i, capped at eval_cap steps."""
    env = gym.wrappers.TimeLimit(make_env(task), TASKS[task].eval_cap)
    returns = []
    for i in range(episodes):
        observation, _ = env.reset(seed=EVAL_SEED + i)
        total, done = 0.0, False
        while not done:
            observation, reward, terminated, truncated, _ = env.step(act(observation))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def run_trpo_tf(task: str, seed: int, timesteps: int, episodes: int) -> dict[str, Any]:
    from trpo_tf import TRPO, TRPOConfig

    config = TRPOConfig(steps_per_iteration=STEPS_PER_ITERATION, n_envs=N_ENVS, policy_hidden=(), value_hidden=(),
                        cg_iters=CG_ITERS, cg_damping=UPDATE["cg_damping"],
                        line_search_coef=UPDATE["line_search_shrinking_factor"],
                        line_search_max_steps=UPDATE["line_search_max_iter"], max_kl=UPDATE["target_kl"],
                        value_epochs=UPDATE["n_critic_updates"], value_batch_size=UPDATE["batch_size"],
                        value_lr=UPDATE["learning_rate"], gamma=UPDATE["gamma"], gae_lambda=UPDATE["gae_lambda"],
                        hvp_method="gauss_newton")
    agent = TRPO(TASKS[task].env_id, config, seed=seed)
    start = time.perf_counter()
    agent.learn(timesteps)
    seconds = time.perf_counter() - start
    peak = peak_memory_mib()
    curve = [(entry["timesteps"], entry["episode_return_mean"]) for entry in agent.history]
    returns = evaluate(lambda observation: int(agent.predict(observation[None])[0]), task, episodes)
    return result(agent.timesteps, seconds, peak, curve, returns)


def run_sb3(task: str, seed: int, timesteps: int, episodes: int) -> dict[str, Any]:
    # Stable-Baselines3's logger imports TensorBoard, which imports TensorFlow when it can: that
    # would add TensorFlow to sb3-contrib's memory and start-up. TensorBoard runs without it.
    sys.modules["tensorflow"] = None  # type: ignore[assignment]
    import torch
    from sb3_contrib import TRPO as SB3TRPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    class SmallCNN(BaseFeaturesExtractor):
        """trpo_tf's small CNN in PyTorch: [B, H, W, C] grids → 16 3×3 ReLU convolutions → dense ReLU 128."""

        def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 128):
            super().__init__(observation_space, features_dim)
            height, width, channels = observation_space.shape
            self.net = torch.nn.Sequential(
                torch.nn.Conv2d(channels, 16, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                torch.nn.Linear(16 * (height - 2) * (width - 2), features_dim), torch.nn.ReLU())

        def forward(self, observations: torch.Tensor) -> torch.Tensor:
            return self.net(observations.permute(0, 3, 1, 2))

    class Curve(BaseCallback):
        """(timesteps, mean return of the last 100 episodes) after each rollout, as trpo_tf's history has it."""

        def __init__(self) -> None:
            super().__init__()
            self.points: list[tuple[int, float]] = []

        def _on_rollout_end(self) -> None:
            if self.model.ep_info_buffer:
                self.points.append((self.num_timesteps, float(np.mean([i["r"] for i in self.model.ep_info_buffer]))))

        def _on_step(self) -> bool:
            return True

    policy_kwargs: dict[str, Any] = dict(net_arch=dict(pi=[], vf=[]), share_features_extractor=False)
    if task == "minatar":
        policy_kwargs["features_extractor_class"] = SmallCNN
    env = make_vec_env(TASKS[task].env_id, n_envs=N_ENVS, seed=seed)
    model = SB3TRPO("CnnPolicy", env, n_steps=STEPS_PER_ITERATION // N_ENVS, cg_max_steps=CG_ITERS,
                    seed=seed, policy_kwargs=policy_kwargs, **UPDATE)
    curve = Curve()
    start = time.perf_counter()
    model.learn(timesteps, callback=curve)
    seconds = time.perf_counter() - start
    peak = peak_memory_mib()
    returns = evaluate(lambda observation: int(model.predict(observation, deterministic=True)[0]), task, episodes)
    return result(model.num_timesteps, seconds, peak, curve.points, returns)


def peak_memory_mib() -> float:
    """This process's peak resident memory so far, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def result(timesteps: int, seconds: float, peak: float, curve: list, returns: list[float]) -> dict[str, Any]:
    return {"timesteps": int(timesteps), "train_seconds": round(seconds, 1), "steps_per_second": timesteps / seconds,
            "peak_memory_mib": round(peak, 1), "eval_returns": returns, "eval_mean": float(np.mean(returns)),
            "curve": [[int(t), float(r)] for t, r in curve]}


def run_path(out: str, library: str, task: str, seed: int) -> str:
    return os.path.join(out, "runs", f"{library}-{task}-seed{seed}.json")


def load_runs(out: str) -> list[dict[str, Any]]:
    folder = os.path.join(out, "runs")
    runs = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        with open(os.path.join(folder, name), encoding="utf-8") as handle:
            runs.append(json.load(handle))
    return runs


def summary_table(runs: list[dict[str, Any]]) -> str:
    """Markdown: per task and library, the median [range] of the evaluation, of the final training return
    (the curve's last point) and of the training speed."""
    lines = ["| task | library | seeds | steps | evaluation return, median [min – max] "
             "| training return (last 100 episodes), median [min – max] | training steps/s, median "
             "| peak resident memory, MiB | speed vs sb3-contrib |", "|---|---|---|---|---|---|---|---|---|"]
    for task in TASKS:
        speeds = {library: statistics.median([r["steps_per_second"] for r in runs
                                              if r["task"] == task and r["library"] == library] or [float("nan")])
                  for library in LIBRARIES}
        for library in LIBRARIES:
            group = [r for r in runs if r["task"] == task and r["library"] == library]
            if not group:
                continue
            returns = [r["eval_mean"] for r in group]
            training = [r["curve"][-1][1] if r["curve"] else float("nan") for r in group]
            lines.append(f"| {TASKS[task].title} | {library} | {len(group)} | {group[0]['timesteps']:,} "
                         f"| {statistics.median(returns):.1f} [{min(returns):.1f} – {max(returns):.1f}] "
                         f"| {statistics.median(training):.1f} [{min(training):.1f} – {max(training):.1f}] "
                         f"| {speeds[library]:,.0f} | {max(r['peak_memory_mib'] for r in group):,.0f} "
                         f"| {speeds[library] / speeds['sb3-contrib']:.2f}× |")
    return "\n".join(lines)


def plot(out: str, runs: list[dict[str, Any]]) -> str:
    """One panel per task: each run's training return (last 100 episodes) against steps, by library."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tasks = [task for task in TASKS if any(r["task"] == task for r in runs)]
    figure = Figure(figsize=(5 * len(tasks), 3.6), dpi=100)
    FigureCanvasAgg(figure)
    for index, task in enumerate(tasks):
        axes = figure.add_subplot(1, len(tasks), index + 1)
        for color, library in zip(("C0", "C1"), LIBRARIES):
            for number, run in enumerate(r for r in runs if r["task"] == task and r["library"] == library):
                steps, returns = zip(*run["curve"]) if run["curve"] else ((), ())
                axes.plot(steps, returns, color=color, alpha=0.8, label=library if number == 0 else None)
        axes.set_title(TASKS[task].title)
        axes.set_xlabel("timesteps")
        axes.set_ylabel("training return (last 100 episodes)")
        axes.grid(alpha=0.3)
        axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    path = os.path.join(out, "atari.png")
    figure.savefig(path)
    return path


def report(out: str, command: str) -> str:
    runs = load_runs(out)
    if not runs:
        raise SystemExit(f"no finished runs under {out}/runs")
    table = summary_table(runs)
    plot(out, runs)
    with open(os.path.join(out, "summary.md"), "w", encoding="utf-8") as handle:
        handle.write(f"{table}\n\nCommand: {command}\n")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(TASKS), default="minatar")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--timesteps", type=int, help="steps per run (default: 1M for minatar, 24,576 for ale)")
    parser.add_argument("--libraries", nargs="+", choices=LIBRARIES, default=LIBRARIES)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results/atari")
    parser.add_argument("--report", action="store_true", help="only rebuild the table and figure from OUT/runs")
    parser.add_argument("--run", nargs=2, metavar=("LIBRARY", "SEED"), help=argparse.SUPPRESS)  # one run, this process
    args = parser.parse_args()
    timesteps = args.timesteps or TASKS[args.task].timesteps
    if args.run:
        library, seed = args.run[0], int(args.run[1])
        run = {"trpo_tf": run_trpo_tf, "sb3-contrib": run_sb3}[library](args.task, seed, timesteps, args.eval_episodes)
        path = run_path(args.out, library, args.task, seed)
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(dict(run, library=library, task=args.task, seed=seed), handle)
        os.replace(path + ".tmp", path)
        return
    os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
    if not args.report:
        for seed in args.seeds:
            for library in args.libraries:
                path = run_path(args.out, library, args.task, seed)
                if os.path.exists(path):
                    continue
                command = [sys.executable, __file__, "--task", args.task, "--timesteps", str(timesteps),
                           "--eval-episodes", str(args.eval_episodes), "--out", args.out, "--run", library, str(seed)]
                print(" ".join(command[1:]), flush=True)
                subprocess.run(command, check=True)
                with open(path, encoding="utf-8") as handle:
                    finished = json.load(handle)
                print(f"{library} {args.task} seed {seed}: evaluation {finished['eval_mean']:.1f}, "
                      f"{finished['steps_per_second']:.0f} steps/s, peak {finished['peak_memory_mib']:.0f} MiB",
                      flush=True)
    print(report(args.out, "python benchmarks/atari.py " + " ".join(sys.argv[1:])))


if __name__ == "__main__":
    main()
