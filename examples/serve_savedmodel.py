"""Drive a gymnasium environment with an exported policy, using TensorFlow alone.

    python examples/serve_savedmodel.py savedmodels/Pendulum-v1 --env Pendulum-v1 --episodes 3

PATH is a version folder (``.../1``) or the model folder above the numbered versions (the
highest is used). The ``serving_default`` signature takes a batch of raw float32
observations [B, *obs_shape] and answers deterministic actions in the environment's units;
observation normalization happens inside the graph. Nothing from trpo_tf is imported: this
is all any TensorFlow program needs to run an export.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Callable

import gymnasium as gym
import numpy as np
import tensorflow as tf


def saved_model_dir(path: str) -> str:
    """``path`` when it holds saved_model.pb, else its highest numbered version folder."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = [int(name) for name in os.listdir(path) if name.isdigit()]
    if not versions:
        raise SystemExit(f"no SavedModel in {path}: expected saved_model.pb or numbered version folders")
    return os.path.join(path, str(max(versions)))


def recorded_env(model_dir: str) -> tuple[str | None, dict]:
    """(environment id, gymnasium.make keyword arguments) written in the export's
    assets/metadata.json; (None, {}) when it records none."""
    path = os.path.join(model_dir, "assets", "metadata.json")
    if not os.path.isfile(path):
        return None, {}
    with open(path, encoding="utf-8") as file:
        metadata = json.load(file)
    return metadata.get("env_id"), metadata.get("config", {}).get("env_kwargs", {})


def run_episode(act: Callable[[np.ndarray], np.ndarray], env: gym.Env, seed: int) -> float:
    """Undiscounted return of one episode; ``act`` maps observations [1, *obs_shape] to actions [1, *A]."""
    observation, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        action = act(np.asarray(observation, dtype=np.float32)[None])[0]
        observation, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        done = terminated or truncated
    return total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run an exported policy (SavedModel) in its environment.")
    parser.add_argument("path", help="SavedModel version folder, or the folder of numbered versions")
    parser.add_argument("--env", help="gymnasium environment id (default: the one in metadata.json)")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="episode i is reset with seed + i")
    args = parser.parse_args(argv)

    model_dir = saved_model_dir(args.path)
    recorded_id, recorded_kwargs = recorded_env(model_dir)
    env_id = args.env or recorded_id
    if env_id is None:
        parser.error("--env is required: the export records no environment id")
    policy = tf.saved_model.load(model_dir).signatures["serving_default"]

    def act(observations: np.ndarray) -> np.ndarray:
        return policy(observation=tf.constant(observations))["action"].numpy()

    env = gym.make(env_id, **(recorded_kwargs if env_id == recorded_id else {}))
    returns = []
    for episode in range(args.episodes):
        returns.append(run_episode(act, env, args.seed + episode))
        print(f"episode {episode + 1}: return {returns[-1]:.2f}", flush=True)
    env.close()
    print(f"mean return over {len(returns)} episodes: {np.mean(returns):.2f} ± {np.std(returns):.2f}")


if __name__ == "__main__":
    main()
