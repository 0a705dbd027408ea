"""Action masking: trpo_tf with and without masks, and sb3-contrib's MaskablePPO (its defaults) as the reference.

    python benchmarks/masking.py                                   # the full benchmark (see --help for budgets)
    python benchmarks/masking.py --seeds 0 1 --taxi-steps 200000    # fewer seeds, shorter runs
    python benchmarks/masking.py --quick                           # smoke run: 1 seed, 6k steps per run
    python benchmarks/masking.py --report                          # the tables again, from the saved runs

Two environments:

- ``Taxi-v4`` (gymnasium), which gives ``info["action_mask"]``: moves into walls and pickups or
  drop-offs where none is possible are masked (an illegal pickup or drop-off costs -10, a move
  into a wall wastes a step);
- ``Placement-v0`` (defined here): jobs of random size arrive at 4 machines whose load drains
  by 0.05 a step; each step places the job on a machine (reward: its size) or rejects it; placing
  it on a machine without room for it is invalid and **ends the episode**. Masks come in
  ``info["action_mask"]`` and from an ``action_masks()`` method (the one MaskablePPO reads).

Methods, each run in this process one after another: ``trpo_masked`` (``TRPOConfig()``'s
defaults: masks read from the info), ``trpo_unmasked`` (the same with ``action_masks="off"``) and
``maskable_ppo`` (``sb3_contrib.MaskablePPO("MlpPolicy", env)`` with its defaults, masks from
``action_masks()``). Every run counts the **invalid actions** it takes while training (the
environment's own mask of the state it acted in), records the training episodes' mean return
(last 100 episodes, as both libraries log it) and the **steps** at which that mean first reaches
the target (Taxi: 7; Placement: 10), and ends with a deterministic evaluation (the **final return**,
``--eval-episodes`` episodes, episode i reset with seed 10,000 + i; its invalid actions too).

Each finished run is written to ``OUT/runs/<env>-<method>-seed<k>.json`` and not run again (an
interrupted benchmark resumes); ``summary.csv`` and ``summary.md`` (the table) are rewritten
after every run, and the table is printed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from typing import Any, Callable

import gymnasium as gym
import numpy as np

ENVS = {"Taxi-v4": 7.0, "Placement-v0": 10.0}  # environment → the training mean return to reach
METHODS = ("trpo_masked", "trpo_unmasked", "maskable_ppo")
WINDOW = 100  # training episodes averaged, as trpo_tf's history and sb3's ep_rew_mean do
EVAL_SEED = 10_000


# --------------------------------------------------------------------------- the environments

class Placement(gym.Env):
    """Jobs of size 0.1–0.5 arrive one a step at 4 machines (load in [0, 1], draining by 0.05 a step).

    Observation: the 4 loads and the job's size. Action k < 4 places the job on machine k (reward: its
    size); action 4 rejects it (reward 0). Placing a job where it does not fit (load + size > 1) is
    invalid: the episode ends there, without reward. Episodes last 50 steps.
    """

    MACHINES, DRAIN, LENGTH = 4, 0.05, 50

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.MACHINES + 1,), np.float32)
        self.action_space = gym.spaces.Discrete(self.MACHINES + 1)
        self.loads = np.zeros(self.MACHINES)
        self.size, self.t = 0.0, 0

    def action_masks(self) -> np.ndarray:
        """Bool [5]: the machines with room for the job, and rejecting (always allowed)."""
        return np.append(self.loads + self.size <= 1.0 + 1e-9, True)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.loads, self.t = np.zeros(self.MACHINES), 0
        return self._next_job(), {"action_mask": self.action_masks()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        action, self.t = int(action), self.t + 1
        if action < self.MACHINES and not self.action_masks()[action]:
            return self._observation(), 0.0, True, False, {"action_mask": self.action_masks()}
        reward = 0.0
        if action < self.MACHINES:
            self.loads[action] += self.size
            reward = self.size
        self.loads = np.maximum(self.loads - self.DRAIN, 0.0)
        observation = self._next_job()
        return observation, reward, False, self.t >= self.LENGTH, {"action_mask": self.action_masks()}

    def _next_job(self) -> np.ndarray:
        self.size = float(self.np_random.integers(1, 6)) / 10
        return self._observation()

    def _observation(self) -> np.ndarray:
        return np.append(self.loads, self.size).astype(np.float32)


class InvalidActionCounter(gym.Wrapper):
    """Counts the actions taken that the mask of the state they were taken in (its ``info["action_mask"]``) forbids.

    Every counter made is kept in :data:`COUNTERS`, so a run can sum the invalid actions of the
    environments its library made.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.mask: np.ndarray | None = None
        self.invalid = 0
        COUNTERS.append(self)

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        observation, info = self.env.reset(**kwargs)
        self.mask = np.asarray(info["action_mask"])
        return observation, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        assert self.mask is not None
        self.invalid += int(self.mask[int(action)] == 0)
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.mask = np.asarray(info["action_mask"])
        return observation, reward, terminated, truncated, info


COUNTERS: list[InvalidActionCounter] = []


def counted(env_id: str) -> Callable[[], gym.Env]:
    """A maker of ``env_id`` behind an :class:`InvalidActionCounter`."""
    return lambda: InvalidActionCounter(gym.make(env_id))


gym.register("Placement-v0", entry_point=Placement)
for _env_id in ENVS:
    gym.register(f"Counted{_env_id}", entry_point=counted(_env_id))


def mask_of(env: gym.Env) -> np.ndarray:
    """The current mask of a counted environment (what MaskablePPO's ``action_masks()`` returns)."""
    counter = env
    while not isinstance(counter, InvalidActionCounter):
        counter = counter.env  # type: ignore[attr-defined]
    assert counter.mask is not None
    return counter.mask.astype(bool)


# --------------------------------------------------------------------------- the runs

def run_trpo(env_id: str, masked: bool, seed: int, steps: int, eval_episodes: int) -> dict[str, Any]:
    """``TRPOConfig()`` 's defaults (``action_masks="off"`` when not ``masked``) on ``env_id``, then its evaluation."""
    from trpo_tf import TRPO, TRPOConfig

    COUNTERS.clear()
    start = time.perf_counter()
    agent = TRPO(f"Counted{env_id}", TRPOConfig(action_masks="auto" if masked else "off"), seed=seed)
    assert agent.mask_source == ("info" if masked else None)
    agent.learn(steps)
    seconds = time.perf_counter() - start
    invalid = sum(counter.invalid for counter in COUNTERS)
    curve = [(entry["timesteps"], entry["episode_return_mean"]) for entry in agent.history]
    evaluation_env = InvalidActionCounter(gym.make(env_id))
    evaluation = agent.evaluate(episodes=eval_episodes, env=evaluation_env, seed=EVAL_SEED)
    agent.close()
    return {"timesteps": agent.timesteps, "invalid_actions": invalid, "curve": curve, "train_seconds": seconds,
            "eval_mean": evaluation["mean_return"], "eval_std": evaluation["std_return"],
            "eval_invalid_actions": evaluation_env.invalid}


def run_maskable_ppo(env_id: str, seed: int, steps: int, eval_episodes: int) -> dict[str, Any]:
    """sb3-contrib's MaskablePPO with its defaults, masks from ``action_masks()``, then its evaluation."""
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.wrappers import ActionMasker
    from stable_baselines3.common.callbacks import BaseCallback

    class Curve(BaseCallback):
        """(timesteps, mean return of the last 100 training episodes) after each rollout."""

        def __init__(self) -> None:
            super().__init__()
            self.points: list[tuple[int, float]] = []

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            returns = [episode["r"] for episode in self.model.ep_info_buffer]
            self.points.append((int(self.num_timesteps), float(np.mean(returns)) if returns else float("nan")))

    COUNTERS.clear()
    start = time.perf_counter()
    model = MaskablePPO("MlpPolicy", ActionMasker(InvalidActionCounter(gym.make(env_id)), mask_of), seed=seed,
                        device="cpu")
    curve = Curve()
    model.learn(steps, callback=curve)
    seconds = time.perf_counter() - start
    invalid = sum(counter.invalid for counter in COUNTERS)
    env = InvalidActionCounter(gym.make(env_id))
    returns = []
    for episode in range(eval_episodes):
        observation, _ = env.reset(seed=EVAL_SEED + episode)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(observation, deterministic=True, action_masks=mask_of(env))
            observation, reward, terminated, truncated, _ = env.step(int(action))
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    return {"timesteps": int(model.num_timesteps), "invalid_actions": invalid, "curve": curve.points,
            "train_seconds": seconds, "eval_mean": float(np.mean(returns)), "eval_std": float(np.std(returns)),
            "eval_invalid_actions": env.invalid}


def run(env_id: str, method: str, seed: int, steps: int, eval_episodes: int) -> dict[str, Any]:
    """One run of ``method`` and its summary: the target's steps and the final training mean added."""
    if method == "maskable_ppo":
        result = run_maskable_ppo(env_id, seed, steps, eval_episodes)
    else:
        result = run_trpo(env_id, method == "trpo_masked", seed, steps, eval_episodes)
    target = ENVS[env_id]
    reached = [t for t, mean in result["curve"] if mean >= target]
    return {"env": env_id, "method": method, "seed": seed, "budget": steps, "target": target,
            "steps_to_target": reached[0] if reached else None,
            "final_train_mean": result["curve"][-1][1] if result["curve"] else None, **result}


# --------------------------------------------------------------------------- the tables

def load_runs(out: str) -> list[dict[str, Any]]:
    folder = os.path.join(out, "runs")
    runs = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name.endswith(".json"):
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                runs.append(json.load(handle))
    return runs


def _median_range(values: list[float], digits: int = 1) -> str:
    """``median [min – max]`` of per-seed values."""
    if not values:
        return "–"
    return f"{np.median(values):,.{digits}f} [{min(values):,.{digits}f} – {max(values):,.{digits}f}]"


def table(runs: list[dict[str, Any]]) -> str:
    """Per environment and method, over seeds: invalid actions, steps to the target, final returns, time."""
    lines = ["| environment | method | seeds | steps per run | invalid actions in training, median [min – max] "
             "| runs reaching the target | steps to the target (median of those) "
             "| final training mean return | final return (deterministic evaluation) | evaluation invalid actions "
             "| minutes per run |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for env_id, target in ENVS.items():
        for method in METHODS:
            group = [r for r in runs if r["env"] == env_id and r["method"] == method]
            if not group:
                continue
            reached = [r["steps_to_target"] for r in group if r["steps_to_target"] is not None]
            budgets = sorted({r["budget"] for r in group})
            lines.append(
                f"| {env_id} (target {target:g}) | {method} | {len(group)} | {', '.join(f'{b:,}' for b in budgets)} "
                f"| {_median_range([r['invalid_actions'] for r in group], 0)} | {len(reached)}/{len(group)} "
                f"| {f'{np.median(reached):,.0f}' if reached else '–'} "
                f"| {_median_range([r['final_train_mean'] for r in group if r['final_train_mean'] is not None])} "
                f"| {_median_range([r['eval_mean'] for r in group])} "
                f"| {sum(r['eval_invalid_actions'] for r in group)} "
                f"| {np.median([r['train_seconds'] for r in group]) / 60:.1f} |")
    return "\n".join(lines)


def write_reports(out: str, runs: list[dict[str, Any]], command: str) -> str:
    keys = ["env", "method", "seed", "budget", "timesteps", "invalid_actions", "target", "steps_to_target",
            "final_train_mean", "eval_mean", "eval_std", "eval_invalid_actions", "train_seconds"]
    with open(os.path.join(out, "summary.csv"), "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(keys)
        for r in runs:
            writer.writerow([r[key] for key in keys])
    text = table(runs)
    with open(os.path.join(out, "summary.md"), "w", encoding="utf-8") as handle:
        handle.write(f"Command: `{command}`\n\n{text}\n")
    return text


def one_thread() -> None:
    """Both libraries on one thread each (small MLPs: more threads only contend for the cores)."""
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    try:
        import torch
    except ImportError:  # MaskablePPO's runs need it; trpo_tf's do not
        return
    torch.set_num_threads(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--taxi-steps", type=int, default=500_000, help="environment steps per Taxi-v4 run")
    parser.add_argument("--placement-steps", type=int, default=200_000, help="steps per Placement-v0 run")
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                      "masking"))
    parser.add_argument("--quick", action="store_true", help="1 seed, 6,144 steps per run, 5 evaluation episodes")
    parser.add_argument("--report", action="store_true", help="only rebuild the tables from the saved runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.taxi_steps, args.placement_steps, args.eval_episodes = [0], 6144, 6144, 5
        args.out = os.path.join(args.out, "quick")
    os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
    command = "python benchmarks/masking.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if not args.report:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        one_thread()
        budgets = {"Taxi-v4": args.taxi_steps, "Placement-v0": args.placement_steps}
        for seed in args.seeds:
            for env_id in args.envs:
                for method in args.methods:
                    path = os.path.join(args.out, "runs", f"{env_id}-{method}-seed{seed}.json")
                    if os.path.exists(path):
                        continue
                    result = run(env_id, method, seed, budgets[env_id], args.eval_episodes)
                    with open(path, "w", encoding="utf-8") as handle:
                        json.dump(result, handle)
                    print(f"{env_id} {method} seed {seed}: {result['invalid_actions']:,} invalid actions, target at "
                          f"{result['steps_to_target']}, final return {result['eval_mean']:.2f} "
                          f"({result['train_seconds'] / 60:.1f} min)", flush=True)
                    write_reports(args.out, load_runs(args.out), command)
    print(write_reports(args.out, load_runs(args.out), command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
