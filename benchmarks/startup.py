"""Start-up cost: importing trpo_tf, building the agent, and the first iteration against later ones.

    python benchmarks/startup.py [--env HalfCheetah-v5] [--runs 3]

Each run is a fresh ``python`` process with the environment's preset: it times ``import
trpo_tf`` (TensorFlow included), ``TRPO(...)``, the first iteration (tracing the policy step
and value fit, and XLA compiling them or loading them from the persistent cache) and the
median of iterations 2–6. The first run uses an empty XLA cache directory ("cold"), the
others the cache it filled ("warm"), as a user's first and later runs do.

    python benchmarks/startup.py --step-modes [--env HalfCheetah-v5]

Where the first policy step's time goes, in each way TensorFlow can run it: in a fresh process
per mode (after a process that fills the XLA cache), the step of the preset's policy on a
random batch of ``steps_per_iteration`` samples is traced, called once (XLA compiling or
loading from the warm cache, or TensorFlow's graph runtime instantiating the graph) and called
again (a steady step); run eagerly, there is no trace and every call costs the same.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ONE_RUN = """
import json, sys, time
start = time.perf_counter()
import trpo_tf
from trpo_tf import TRPO, TRPOConfig
imported = time.perf_counter()
agent = TRPO(sys.argv[1], TRPOConfig.preset(sys.argv[1]), seed=0)
built = time.perf_counter()
seconds = []
for _ in range(6):
    began = time.perf_counter()
    agent.iterate()
    seconds.append(time.perf_counter() - began)
print(json.dumps({"import": imported - start, "build": built - imported, "first": seconds[0], "later": seconds[1:]}))
"""

STEP_MODE = """
import json, sys, time
import numpy as np
import tensorflow as tf
from trpo_tf import TRPO, TRPOConfig
from trpo_tf.update import PolicyUpdate
env_id, mode = sys.argv[1], sys.argv[2]
with TRPO(env_id, TRPOConfig.preset(env_id), seed=0) as agent:
    config, policy = agent.config, agent.policy
    rng = np.random.default_rng(0)
    n = config.steps_per_iteration
    features = tf.constant(rng.normal(size=(n, policy.model_input_spec().shape[1])), tf.float32)
    actions = tf.constant(policy.actor().act(rng.normal(size=(n, *policy.observation_spec().shape[1:])), rng)[1])
    advantages = tf.constant(rng.normal(size=n), tf.float32)
    update = PolicyUpdate(policy, config, xla=mode == "xla")
    # Eager: the Python function the compiled step wraps, called directly (nothing traced or compiled).
    step = update if mode != "eager" else (lambda *batch: update._step_graph(*batch, tf.constant(config.max_kl)))
    seconds = {}
    began = time.perf_counter()
    if mode != "eager":
        update.trace()
    seconds["trace"] = time.perf_counter() - began
    for call in ("first", "second"):
        began = time.perf_counter()
        float(step(features, actions, advantages)["kl"])
        seconds[call] = time.perf_counter() - began
print(json.dumps(seconds))
"""


def step_modes(env_id: str, environment: dict) -> None:
    """The first policy step by mode: trace, first call and a steady call (module docstring)."""
    subprocess.run([sys.executable, "-c", STEP_MODE, env_id, "xla"], env=environment, check=True, capture_output=True)
    print("| mode | trace | first call | steady call | trace + first − steady |")
    print("|---|---:|---:|---:|---:|")
    for mode, name in (("xla", "XLA, warm cache"), ("graph", "graph runtime, no XLA"), ("eager", "eager")):
        output = subprocess.run([sys.executable, "-c", STEP_MODE, env_id, mode], env=environment, check=True,
                                capture_output=True, text=True).stdout
        t = json.loads(output.strip().splitlines()[-1])
        print(f"| {name} | {t['trace']:.2f} s | {t['first']:.2f} s | {t['second']:.3f} s "
              f"| {t['trace'] + t['first'] - t['second']:.2f} s |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--step-modes", action="store_true", help="the first policy step by execution mode")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        environment = dict(os.environ, TRPO_TF_XLA_CACHE=cache)
        environment.pop("TF_XLA_FLAGS", None)
        if args.step_modes:
            return step_modes(args.env, environment)
        print("| run | XLA cache | import trpo_tf | build agent | first iteration | later iterations (median) "
              "| first − later |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for run in range(args.runs):
            output = subprocess.run([sys.executable, "-c", ONE_RUN, args.env], env=environment, check=True,
                                    capture_output=True, text=True).stdout
            timing = json.loads(output.strip().splitlines()[-1])
            later = statistics.median(timing["later"])
            print(f"| {run + 1} | {'cold' if run == 0 else 'warm'} | {timing['import']:.2f} s | {timing['build']:.2f} s "
                  f"| {timing['first']:.2f} s | {later:.3f} s | {timing['first'] - later:.2f} s |", flush=True)


if __name__ == "__main__":
    main()
