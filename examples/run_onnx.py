"""Drive a gymnasium environment with an exported policy through onnxruntime.

    trpo-tf export runs/CartPole-v1-seed0 exported/CartPole-v1 --onnx
    python examples/run_onnx.py exported/CartPole-v1 --episodes 3          # env id from the metadata
    python examples/run_onnx.py policy.onnx --env CartPole-v1 --episodes 3

Runs with onnxruntime, NumPy and gymnasium alone (no TensorFlow, no trpo_tf). PATH is an
``.onnx`` file of the ``serving_default`` signature, or an export (a version folder or the
folder of numbered versions) holding ``onnx/serving_default.onnx``. The model takes
``observation`` [B, *obs_shape] (raw observations: normalization is in the graph; float32, or
uint8 for image frames and bool grids), or for a ``Dict`` space one input per key, and returns
``action`` in the environment's units; here the batch is one observation.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import onnxruntime


def onnx_file(path: str) -> tuple[str, str | None, dict]:
    """(path of serving_default.onnx, env id, env kwargs): the last two recorded in the export, else (None, {})."""
    if os.path.isfile(path):
        return path, None, {}
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        versions = [int(name) for name in os.listdir(path) if name.isdigit()] if os.path.isdir(path) else []
        if not versions:
            raise SystemExit(f"no .onnx file or export at {path}")
        path = os.path.join(path, str(max(versions)))
    model = os.path.join(path, "onnx", "serving_default.onnx")
    if not os.path.isfile(model):
        raise SystemExit(f"{path} has no onnx/serving_default.onnx: export with `trpo-tf export RUN OUT --onnx` "
                         f"or trpo_tf.export.to_onnx")
    metadata_path = os.path.join(path, "assets", "metadata.json")
    if not os.path.isfile(metadata_path):
        return model, None, {}
    with open(metadata_path, encoding="utf-8") as file:
        metadata = json.load(file)
    return model, metadata.get("env_id"), metadata.get("config", {}).get("env_kwargs") or {}


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
    parser = argparse.ArgumentParser(description="Run an exported policy through onnxruntime in its environment.")
    parser.add_argument("path", help="serving_default .onnx file, export version folder or folder of versions")
    parser.add_argument("--env", help="gymnasium environment id (default: the one in the export's metadata)")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="episode i is reset with seed + i")
    args = parser.parse_args(argv)

    model_path, recorded_id, recorded_kwargs = onnx_file(args.path)
    env_id = args.env or recorded_id
    if env_id is None:
        parser.error("--env is required with a .onnx file")
    session = onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"])

    # input name → dtype: "observation", or a Dict space's keys; uint8 for frames and bool grids
    inputs = {i.name: np.uint8 if i.type == "tensor(uint8)" else np.float32 for i in session.get_inputs()}

    def act(observation: Any) -> np.ndarray:
        named = observation if isinstance(observation, dict) else {"observation": observation}
        return session.run(["action"], {name: np.asarray(named[name], dtype)[None]
                                        for name, dtype in inputs.items()})[0][0]

    env = gym.make(env_id, **(recorded_kwargs if env_id == recorded_id else {}))
    returns = []
    for episode in range(args.episodes):
        returns.append(run_episode(act, env, args.seed + episode))
        print(f"episode {episode + 1}: return {returns[-1]:.2f}", flush=True)
    env.close()
    print(f"mean return over {len(returns)} episodes: {np.mean(returns):.2f} ± {np.std(returns):.2f}")


if __name__ == "__main__":
    main()
