"""Drive a gymnasium environment with an exported recurrent policy, using TensorFlow alone.

    python examples/serve_recurrent.py savedmodels/CartPole-v1 --env CartPole-v1 --episodes 3

A recurrent export (``TRPOConfig.recurrent``: "lstm" or "gru") carries a state between calls:
``serving_default`` takes ``observation`` [B, *obs_shape] and ``state`` [B, S] (float32) and answers
``action`` and the next ``state``; ``initial_state(batch_size)`` gives the state a new episode starts
from. The program keeps the state and feeds it back at every step, and starts each episode from
``initial_state``. Nothing from trpo_tf is imported.
"""

from __future__ import annotations

import argparse
import json
import os

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


def run_episode(model: tf.Module, env: gym.Env, seed: int) -> float:
    """Undiscounted return of one episode, the state carried from step to step."""
    serve, initial_state = model.signatures["serving_default"], model.signatures["initial_state"]
    state = initial_state(batch_size=tf.constant(1))["state"]  # zeros [1, S]
    observation, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        outputs = serve(observation=tf.constant(np.asarray(observation, np.float32)[None]), state=state)
        state = outputs["state"]  # what the next step reads
        observation, reward, terminated, truncated, _ = env.step(outputs["action"].numpy()[0])
        total += float(reward)
        done = terminated or truncated
    return total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run an exported recurrent policy (SavedModel) in its environment.")
    parser.add_argument("path", help="SavedModel version folder, or the folder of numbered versions")
    parser.add_argument("--env", help="gymnasium environment id (default: the one in metadata.json)")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=10_000, help="episode i is reset with seed + i")
    args = parser.parse_args(argv)
    model_dir = saved_model_dir(args.path)
    with open(os.path.join(model_dir, "assets", "metadata.json"), encoding="utf-8") as file:
        metadata = json.load(file)
    if not metadata.get("recurrent"):
        raise SystemExit(f"{model_dir} is not a recurrent policy: use examples/serve_savedmodel.py")
    env = gym.make(args.env or metadata["env_id"], **metadata.get("config", {}).get("env_kwargs", {}))
    model = tf.saved_model.load(model_dir)
    returns = [run_episode(model, env, args.seed + i) for i in range(args.episodes)]
    print(f"{metadata['recurrent']['cell']} of {metadata['recurrent']['units']} units, state "
          f"{metadata['recurrent']['shape']}: returns {[round(r, 2) for r in returns]}, mean {np.mean(returns):.2f}")


if __name__ == "__main__":
    main()
