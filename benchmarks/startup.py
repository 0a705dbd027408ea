"""Start-up cost: importing trpo_tf, building the agent, and the first iteration against later ones.

    python benchmarks/startup.py [--env HalfCheetah-v5] [--runs 3]

Each run is a fresh ``python`` process with the environment's preset: it times ``import
trpo_tf`` (TensorFlow included), ``TRPO(...)``, the first iteration (tracing the policy step
and value fit, and XLA compiling them or loading them from the persistent cache) and the
median of iterations 2–6. The first run uses an empty XLA cache directory ("cold"), the
others the cache it filled ("warm"), as a user's first and later runs do.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        environment = dict(os.environ, TRPO_TF_XLA_CACHE=cache)
        environment.pop("TF_XLA_FLAGS", None)
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
