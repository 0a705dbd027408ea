"""Latency of one-observation ``serving_default`` calls: SavedModel in TensorFlow vs LiteRT.

    python benchmarks/serving_latency.py [savedmodels/HalfCheetah-v5] [--calls 5000]

Loads the export (the highest version under PATH), converts it to TFLite in a temporary
folder, and times ``--calls`` single-observation calls of each on random observations
(after 200 warm-up calls). Prints p50 and p99 in microseconds.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from trpo_tf.export import litert_runner, read_metadata, resolve_saved_model_dir, to_tflite


def percentiles(call, observations: np.ndarray, warmup: int = 200) -> tuple[float, float]:
    for observation in observations[:warmup]:
        call(observation)
    times = []
    for observation in observations:
        start = time.perf_counter()
        call(observation)
        times.append(time.perf_counter() - start)
    p50, p99 = np.percentile(np.array(times) * 1e6, [50, 99])
    return float(p50), float(p99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", default="savedmodels/HalfCheetah-v5")
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    path = resolve_saved_model_dir(args.path)
    shape = read_metadata(path)["observation_space"]["shape"]
    observations = np.random.default_rng(0).normal(size=(args.calls, 1, *shape)).astype(np.float32)

    signature = tf.saved_model.load(path).signatures["serving_default"]
    saved_model = percentiles(lambda o: signature(observation=tf.constant(o))["action"].numpy(), observations)
    with tempfile.TemporaryDirectory() as folder:
        run = litert_runner(to_tflite(path, os.path.join(folder, "policy.tflite")))
        litert = percentiles(lambda o: run(o)["action"], observations)
    print(f"{path}: one observation of shape {shape}, {args.calls} calls")
    print("| runtime | p50 µs | p99 µs |\n|---|---|---|")
    print(f"| SavedModel (tf.saved_model.load, signature call) | {saved_model[0]:.0f} | {saved_model[1]:.0f} |")
    print(f"| LiteRT (ai_edge_litert signature runner) | {litert[0]:.1f} | {litert[1]:.1f} |")


if __name__ == "__main__":
    main()
