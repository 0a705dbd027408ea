"""Resident memory of sampling workers over a long run: it must stay flat.

    python benchmarks/worker_memory.py                      # Pendulum-v1, 2 workers, 200 iterations
    python benchmarks/worker_memory.py --env Hopper-v5 --iterations 200

Trains with ``n_workers`` local worker processes and reads each worker's resident set size
(VmRSS in /proc/PID/status, Linux) after every iteration, and whether TensorFlow's library is
mapped into the worker (it should not be: workers act with the NumPy copy of the policy).
Prints the RSS after the first and the last iteration, the peak, and the growth per 100
iterations fitted over the second half; writes ``worker_memory.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def resident_mib(pid: int) -> float:
    """VmRSS of process ``pid`` in MiB."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def maps_tensorflow(pid: int) -> bool:
    """Whether a TensorFlow shared library is mapped into process ``pid``."""
    with open(f"/proc/{pid}/maps") as handle:
        return any("libtensorflow" in line or "_pywrap_tensorflow" in line for line in handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "worker_memory"))
    args = parser.parse_args()

    from trpo_tf import TRPO, TRPOConfig

    config = TRPOConfig.preset(args.env, n_workers=args.workers,
                               n_envs=max(args.workers, TRPOConfig.preset(args.env).n_envs))
    rss: list[list[float]] = []
    with TRPO(args.env, config, seed=0) as agent:
        pids = [handle.process.pid for handle in agent.sampler.handles]
        for iteration in range(args.iterations):
            agent.iterate()
            rss.append([resident_mib(pid) for pid in pids])
        tensorflow = [maps_tensorflow(pid) for pid in pids]
    per_worker = np.array(rss).T  # [workers, iterations]
    half = args.iterations // 2
    slopes = [float(np.polyfit(np.arange(half, args.iterations), series[half:], 1)[0] * 100) for series in per_worker]
    result = {"env": args.env, "workers": args.workers, "iterations": args.iterations,
              "steps_per_iteration": config.steps_per_iteration, "rss_mib": per_worker.round(2).tolist(),
              "first_mib": per_worker[:, 0].round(1).tolist(), "last_mib": per_worker[:, -1].round(1).tolist(),
              "peak_mib": per_worker.max(axis=1).round(1).tolist(),
              "growth_mib_per_100_iterations": [round(s, 3) for s in slopes], "tensorflow_mapped": tensorflow}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "worker_memory.json"), "w") as handle:
        json.dump(result, handle)
    for k in range(args.workers):
        print(f"worker {k}: RSS {result['first_mib'][k]:.1f} MiB after iteration 1, {result['last_mib'][k]:.1f} MiB "
              f"after {args.iterations} (peak {result['peak_mib'][k]:.1f}); growth over the second half "
              f"{slopes[k]:+.3f} MiB per 100 iterations; TensorFlow mapped: {tensorflow[k]}")


if __name__ == "__main__":
    main()
