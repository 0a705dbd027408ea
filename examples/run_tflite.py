"""Drive a gymnasium environment with an exported policy through LiteRT (TensorFlow Lite).

    python examples/run_tflite.py policy.tflite --env Pendulum-v1 --episodes 3
    python examples/run_tflite.py savedmodels/Pendulum-v1 --episodes 3   # converts it first

A ``.tflite`` file runs with ``ai_edge_litert`` alone (no TensorFlow, no trpo_tf). Given a
SavedModel folder instead, the script converts it first with TensorFlow's TFLiteConverter,
builtin ops only, as ``trpo_tf.export.to_tflite`` does. The ``serving_default`` signature
runner resizes its input to the batch it is given; here the batch is one observation. It takes
``observation`` (float32, or uint8 for image frames and bool grids), or for a ``Dict`` space one
input per key.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from ai_edge_litert.interpreter import Interpreter


def tflite_file(path: str) -> tuple[str, tuple[str | None, dict]]:
    """(path of a .tflite file, (env id, env kwargs) recorded in the export); a SavedModel is converted."""
    if os.path.isfile(path):
        return path, (None, {})
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        versions = [int(name) for name in os.listdir(path) if name.isdigit()]
        if not versions:
            raise SystemExit(f"no .tflite file or SavedModel at {path}")
        path = os.path.join(path, str(max(versions)))
    return convert(path), recorded_env(path)


def convert(model_dir: str) -> str:
    """Convert a SavedModel's serving_default signature to a temporary .tflite file; returns its path."""
    import tensorflow as tf  # needed only to convert

    converter = tf.lite.TFLiteConverter.from_saved_model(model_dir, signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.experimental_enable_resource_variables = False  # weights become constants
    out_path = os.path.join(tempfile.mkdtemp(prefix="policy-"), "policy.tflite")
    with open(out_path, "wb") as file:
        file.write(converter.convert())
    return out_path


def recorded_env(model_dir: str) -> tuple[str | None, dict]:
    """(environment id, gymnasium.make keyword arguments) written in the export's
    assets/metadata.json; (None, {}) when it records none."""
    path = os.path.join(model_dir, "assets", "metadata.json")
    if not os.path.isfile(path):
        return None, {}
    with open(path, encoding="utf-8") as file:
        metadata = json.load(file)
    return metadata.get("env_id"), metadata.get("config", {}).get("env_kwargs", {})


def run_episode(act: Callable[[Any], np.ndarray], env: gym.Env, seed: int) -> float:
    """Undiscounted return of one episode; ``act`` maps one raw observation to one action [*A]."""
    observation, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        action = act(observation)
        observation, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        done = terminated or truncated
    return total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run an exported policy through LiteRT in its environment.")
    parser.add_argument("path", help=".tflite file, SavedModel version folder or folder of numbered versions")
    parser.add_argument("--env", help="gymnasium environment id (default: the one in the export's metadata)")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="episode i is reset with seed + i")
    args = parser.parse_args(argv)

    model_path, (recorded_id, recorded_kwargs) = tflite_file(args.path)
    env_id = args.env or recorded_id
    if env_id is None:
        parser.error("--env is required with a .tflite file")
    runner = Interpreter(model_path=model_path).get_signature_runner("serving_default")

    # input name → dtype: "observation", or a Dict space's keys; uint8 for frames and bool grids
    inputs = {name: details["dtype"] for name, details in runner.get_input_details().items()}

    def act(observation: Any) -> np.ndarray:
        named = observation if isinstance(observation, dict) else {"observation": observation}
        return runner(**{name: np.asarray(named[name], dtype)[None] for name, dtype in inputs.items()})["action"][0]

    env = gym.make(env_id, **(recorded_kwargs if env_id == recorded_id else {}))
    returns = []
    for episode in range(args.episodes):
        returns.append(run_episode(act, env, args.seed + episode))
        print(f"episode {episode + 1}: return {returns[-1]:.2f}", flush=True)
    env.close()
    print(f"mean return over {len(returns)} episodes: {np.mean(returns):.2f} ± {np.std(returns):.2f}")


if __name__ == "__main__":
    main()
