"""Recurrent policies on tasks that need memory: trpo_tf MLP vs LSTM vs GRU, and sb3-contrib's RecurrentPPO.

    python benchmarks/recurrent.py                                  # 3 seeds, both tasks, every method
    python benchmarks/recurrent.py --timesteps 40960 --envs CartPoleNoVel-v1 --seeds 0 1 2
    python benchmarks/recurrent.py --report                         # the table again, from the saved runs

Tasks (as rl-baselines3-zoo defines them): ``CartPoleNoVel-v1`` is CartPole-v1 observing the cart's
position and the pole's angle only (``obs[0]``, ``obs[2]``); ``PendulumNoVel-v1`` is Pendulum-v1
observing cos θ and sin θ only (``obs[0]``, ``obs[1]``). Without the velocities a memoryless policy
cannot tell which way things move; a recurrent one can infer it.

Methods:

- ``trpo_mlp``, ``trpo_lstm``, ``trpo_gru``: trpo_tf with the same settings but ``recurrent`` (None,
  "lstm", "gru"; 64 units): one hidden layer of 64 in policy and value, ``steps_per_iteration=2048``
  over ``n_envs`` environments (8 for CartPole, 4 for Pendulum, as the zoo's RecurrentPPO uses),
  ``gamma`` as the zoo's (0.98, 0.9), the rest TRPOConfig's defaults;
- ``recurrent_ppo``: ``sb3_contrib.RecurrentPPO("MlpLstmPolicy")`` at rl-baselines3-zoo's tuned
  settings (hyperparams/ppo_lstm.yml: CartPoleNoVel-v1: 8 envs, n_steps 32, batch 256, 20 epochs,
  gae_lambda 0.8, gamma 0.98, lr and clip range linear from 1e-3 and 0.2; PendulumNoVel-v1: 4 envs,
  n_steps 1024, 10 epochs, gae_lambda 0.95, gamma 0.9, lr 1e-3, clip 0.2, gSDE sampled every 4 steps;
  both VecNormalize'd, an LSTM of 64 with its own critic LSTM, ReLU, net_arch pi=[64] vf=[64], no
  orthogonal initialization).

Every run records the training mean return (last 100 episodes), a deterministic evaluation
(``--eval-episodes`` episodes, episode i reset with seed 10,000 + i, the recurrent state carried and
reset at each episode start) and its speed: environment steps per second over the whole run, and
for trpo_tf the seconds per iteration spent sampling, in the policy step and in the value fit (the
first iteration, which compiles, left out). Each finished run is written to
``OUT/runs/<env>-<method>-seed<k>.json`` and not run again; ``summary.csv`` and ``summary.md`` are
rewritten after every run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from typing import Any

import gymnasium as gym
import numpy as np

ENVS = ("CartPoleNoVel-v1", "PendulumNoVel-v1")
METHODS = ("trpo_mlp", "trpo_lstm", "trpo_gru", "recurrent_ppo")
KEEP = {"CartPoleNoVel-v1": ("CartPole-v1", [0, 2]), "PendulumNoVel-v1": ("Pendulum-v1", [0, 1])}
TRPO_ENVS = {"CartPoleNoVel-v1": {"n_envs": 8, "gamma": 0.98}, "PendulumNoVel-v1": {"n_envs": 4, "gamma": 0.9}}
EVAL_SEED = 10_000
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "recurrent")


# --------------------------------------------------------------------------- the tasks

class NoVelocity(gym.ObservationWrapper):
    """Keeps the observation entries ``keep`` (positions, angles) and drops the velocities."""

    def __init__(self, env: gym.Env, keep: list[int]):
        super().__init__(env)
        self.keep = np.asarray(keep)
        box = env.observation_space
        self.observation_space = gym.spaces.Box(box.low[self.keep], box.high[self.keep], dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.asarray(observation, np.float32)[self.keep]


def make_no_velocity(name: str) -> gym.Env:
    """The task ``name`` (see :data:`KEEP`)."""
    base, keep = KEEP[name]
    return NoVelocity(gym.make(base), keep)


def register() -> None:
    """Register the tasks with gymnasium (so both libraries make them by id)."""
    for name in ENVS:
        if name not in gym.registry:
            gym.register(name, entry_point=make_no_velocity, kwargs={"name": name})


# --------------------------------------------------------------------------- the methods

def run_trpo(env_id: str, method: str, seed: int, timesteps: int, episodes: int) -> dict[str, Any]:
    from trpo_tf import TRPO, TRPOConfig

    recurrent = {"trpo_mlp": None, "trpo_lstm": "lstm", "trpo_gru": "gru"}[method]
    config = TRPOConfig(steps_per_iteration=2048, policy_hidden=(64,), value_hidden=(64,), recurrent=recurrent,
                        recurrent_units=64, **TRPO_ENVS[env_id])
    start = time.perf_counter()
    with TRPO(env_id, config, seed=seed) as agent:
        agent.learn(timesteps)
        seconds = time.perf_counter() - start
        evaluation = agent.evaluate(episodes=episodes, seed=EVAL_SEED)
        later = agent.history[1:] or agent.history
        per_iteration = {key: float(np.mean([entry[key] for entry in later]))
                         for key in ("sampling_seconds", "policy_step_seconds", "value_fit_seconds")}
        steady_fps = float(np.mean([entry["fps"] for entry in later]))
        return {"timesteps": agent.timesteps, "train_return": agent.history[-1]["episode_return_mean"],
                "eval_return": evaluation["mean_return"], "eval_std": evaluation["std_return"],
                "seconds": seconds, "steps_per_second": agent.timesteps / seconds,
                "steady_steps_per_second": steady_fps, **per_iteration}


def linear(initial: float):
    return lambda remaining: remaining * initial


def run_recurrent_ppo(env_id: str, seed: int, timesteps: int, episodes: int) -> dict[str, Any]:
    import torch.nn as nn
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    policy_kwargs = dict(ortho_init=False, activation_fn=nn.ReLU, lstm_hidden_size=64, enable_critic_lstm=True,
                         net_arch=dict(pi=[64], vf=[64]))
    if env_id == "CartPoleNoVel-v1":
        n_envs, settings = 8, dict(n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
                                   learning_rate=linear(1e-3), clip_range=linear(0.2))
    else:
        n_envs, settings = 4, dict(n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10, ent_coef=0.0,
                                   learning_rate=1e-3, clip_range=0.2, use_sde=True, sde_sample_freq=4)
    env = VecNormalize(make_vec_env(env_id, n_envs=n_envs, seed=seed))
    model = RecurrentPPO("MlpLstmPolicy", env, seed=seed, policy_kwargs=policy_kwargs, verbose=0, device="cpu",
                         **settings)
    start = time.perf_counter()
    model.learn(timesteps)
    seconds = time.perf_counter() - start
    returns = [info["r"] for info in model.ep_info_buffer]
    env.training, env.norm_reward = False, False
    evaluation = []
    single = gym.make(env_id)
    for episode in range(episodes):
        observation, _ = single.reset(seed=EVAL_SEED + episode)
        state, start_flag, total, done = None, np.ones((1,), bool), 0.0, False
        while not done:
            action, state = model.predict(env.normalize_obs(observation[None]), state=state,
                                          episode_start=start_flag, deterministic=True)
            observation, reward, terminated, truncated, _ = single.step(action[0])
            total += float(reward)
            done, start_flag = terminated or truncated, np.zeros((1,), bool)
        evaluation.append(total)
    return {"timesteps": int(model.num_timesteps), "train_return": float(np.mean(returns)) if returns else float("nan"),
            "eval_return": float(np.mean(evaluation)), "eval_std": float(np.std(evaluation)), "seconds": seconds,
            "steps_per_second": model.num_timesteps / seconds, "steady_steps_per_second": float("nan"),
            "sampling_seconds": float("nan"), "policy_step_seconds": float("nan"), "value_fit_seconds": float("nan")}


# --------------------------------------------------------------------------- the report

COLUMNS = ("env", "method", "seed", "timesteps", "train_return", "eval_return", "eval_std", "seconds",
           "steps_per_second", "steady_steps_per_second", "sampling_seconds", "policy_step_seconds",
           "value_fit_seconds")


def load_runs(out: str) -> list[dict[str, Any]]:
    folder = os.path.join(out, "runs")
    if not os.path.isdir(folder):
        return []
    runs = [json.load(open(os.path.join(folder, name), encoding="utf-8")) for name in sorted(os.listdir(folder))]
    return sorted(runs, key=lambda r: (ENVS.index(r["env"]), METHODS.index(r["method"]), r["seed"]))


def fmt(value: float, digits: int = 1) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:,.{digits}f}"


def write_report(out: str, note: str) -> str:
    runs = load_runs(out)
    with open(os.path.join(out, "summary.csv"), "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, COLUMNS)
        writer.writeheader()
        for run in runs:
            writer.writerow({key: run[key] for key in COLUMNS})
    lines = ["| task | method | seeds | steps per run | training mean return, median [min – max] | "
             "deterministic evaluation, median [min – max] | env steps/s (whole run) | s/iteration: sampling | "
             "policy step | value fit |", "|---|---|---|---|---|---|---|---|---|---|"]
    for env_id in ENVS:
        for method in METHODS:
            group = [r for r in runs if r["env"] == env_id and r["method"] == method]
            if not group:
                continue

            def spread(key: str) -> str:
                values = np.array([r[key] for r in group], float)
                values = values[np.isfinite(values)]
                if not len(values):
                    return "–"
                return f"{fmt(np.median(values))} [{fmt(values.min())} – {fmt(values.max())}]"

            def median(key: str, digits: int = 2) -> str:
                values = np.array([r[key] for r in group], float)
                return fmt(float(np.median(values)), digits) if np.isfinite(values).any() else "–"

            lines.append(f"| {env_id} | {method} | {len(group)} | {fmt(float(np.median([r['timesteps'] for r in group])), 0)}"
                         f" | {spread('train_return')} | {spread('eval_return')} | {median('steps_per_second', 0)} | "
                         f"{median('sampling_seconds')} | {median('policy_step_seconds')} | {median('value_fit_seconds')} |")
    table = "\n".join(lines)
    with open(os.path.join(out, "summary.md"), "w", encoding="utf-8") as file:
        file.write("# Recurrent policies: trpo_tf MLP / LSTM / GRU and RecurrentPPO\n\n" + note + "\n\n" + table + "\n")
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=ENVS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--timesteps", type=int, default=100_000, help="steps per run (the zoo trains 100,000)")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--out", default=OUT)
    parser.add_argument("--note", default="", help="a line for summary.md (e.g. why the budget was reduced)")
    parser.add_argument("--report", action="store_true", help="only rewrite and print the table")
    args = parser.parse_args(argv)
    register()
    os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
    note = args.note or f"Command: `python benchmarks/recurrent.py --timesteps {args.timesteps}`."
    if not args.report:
        for seed in args.seeds:  # seeds outermost: a partial benchmark has every method
            for env_id in args.envs:
                for method in args.methods:
                    path = os.path.join(args.out, "runs", f"{env_id}-{method}-seed{seed}.json")
                    if os.path.exists(path):
                        continue
                    if method == "recurrent_ppo":
                        result = run_recurrent_ppo(env_id, seed, args.timesteps, args.eval_episodes)
                    else:
                        result = run_trpo(env_id, method, seed, args.timesteps, args.eval_episodes)
                    result = dict(result, env=env_id, method=method, seed=seed)
                    with open(path, "w", encoding="utf-8") as file:
                        json.dump(result, file, indent=1)
                    print(json.dumps(result), flush=True)
                    write_report(args.out, note)
    print(write_report(args.out, note))


if __name__ == "__main__":
    main()
