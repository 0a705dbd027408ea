"""How closely a TFLite conversion answers what its SavedModel answers, on random observations.

    python benchmarks/tflite_agreement.py [--env Pendulum-v1 --env CartPole-v1] [--timesteps 20480]
                                          [--observations 2000]

Trains a small policy on each environment (64-unit MLPs, 2,048 steps per iteration), exports it,
converts the export to TFLite, and feeds both ``--observations`` random observations (Gaussians
of standard deviation 4 around 0, past the normalizer's clip, as the export tests use) in one batch.
Prints, for every output of the deterministic signatures, the largest absolute difference and the
largest difference relative to max(1, |SavedModel output|).
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
import tensorflow as tf

from trpo_tf import TRPO, TRPOConfig, export


def agreement(env_id: str, timesteps: int, count: int, seed: int) -> list[tuple[str, float, float]]:
    """(signature/output, max |lite − saved|, max |lite − saved| / max(1, |saved|)) for each output."""
    agent = TRPO(env_id, TRPOConfig(), seed=seed).learn(timesteps)
    rng = np.random.default_rng(seed)
    observations = (4.0 * rng.standard_normal((count,) + agent.policy.encoder.shape)).astype(np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = agent.export(os.path.join(folder, "model"), episodes=0)
        model = tf.saved_model.load(path)
        lite = export.to_tflite(path, os.path.join(folder, "model.tflite"))
        for signature in export.DETERMINISTIC_SIGNATURES:
            saved = {k: v.numpy() for k, v in model.signatures[signature](observation=observations).items()}
            converted = export.litert_runner(lite, signature)(observations)
            for key, reference in saved.items():
                difference = np.abs(converted[key].astype(np.float64) - reference.astype(np.float64))
                relative = difference / np.maximum(1.0, np.abs(reference.astype(np.float64)))
                rows.append((f"{signature}/{key}", float(difference.max()), float(relative.max())))
    agent.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", action="append", help="environment id (repeatable; default Pendulum-v1, CartPole-v1)")
    parser.add_argument("--timesteps", type=int, default=20480, help="training steps before the export")
    parser.add_argument("--observations", type=int, default=2000, help="random observations compared")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for env_id in args.env or ["Pendulum-v1", "CartPole-v1"]:
        for name, absolute, relative in agreement(env_id, args.timesteps, args.observations, args.seed):
            print(f"{env_id:14s} {name:28s} max abs {absolute:.2e}  max rel (to max(1,|x|)) {relative:.2e}")


if __name__ == "__main__":
    main()
