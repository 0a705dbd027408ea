"""How sampling scales with workers: local processes and Ray actors on an environment padded
to cost 2 ms a step (``padded_env.py``: it sleeps, so it needs no core).

    python benchmarks/scaling.py                         # 1/2/4/8 workers, local and Ray
    python benchmarks/scaling.py --backends local --workers 1 2

For each backend and worker count K it builds ``TRPO("padded_env:PaddedPendulum-v0",
n_envs=8, n_workers=K)`` and times ``--collects`` collections of ``--steps`` steps (after one
untimed collection that starts every worker's episodes). Efficiency is steps/s ÷ (K × the
same backend's steps/s with one worker); 1.0 is perfect scaling. Ray is started with
``num_cpus`` = the largest K, since the stand-in environment sleeps instead of computing.
Writes ``scaling.json``, ``scaling.md`` (the table) and ``scaling.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def measure(backend: str, workers: int, steps: int, collects: int, step_seconds: float) -> float:
    """Sampling steps per second with ``workers`` workers of ``backend``."""
    from trpo_tf import TRPO, TRPOConfig

    config = TRPOConfig(steps_per_iteration=steps, n_envs=8, n_workers=workers, sampler=backend,
                        env_kwargs={"step_seconds": step_seconds})
    with TRPO("padded_env:PaddedPendulum-v0", config, seed=0) as agent:
        policy = agent.policy.snapshot()
        agent.sampler.collect(policy, config.steps_per_env)  # resets; every worker is running
        start = time.perf_counter()
        for _ in range(collects):
            agent.sampler.collect(policy, config.steps_per_env)
        return collects * steps / (time.perf_counter() - start)


def write_table(rows: list[dict], path: str) -> str:
    lines = ["| backend | workers | steps/s | efficiency |", "|---|---:|---:|---:|"]
    lines += [f"| {r['backend']} | {r['workers']} | {r['steps_per_second']:,.0f} | {r['efficiency']:.2f} |"
              for r in rows]
    text = "\n".join(lines) + "\n"
    with open(path, "w") as handle:
        handle.write(text)
    return text


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 4))
    for backend in sorted({r["backend"] for r in rows}):
        mine = [r for r in rows if r["backend"] == backend]
        axis.plot([r["workers"] for r in mine], [r["steps_per_second"] for r in mine], "o-", label=backend)
    single = min((r for r in rows if r["workers"] == 1), key=lambda r: r["steps_per_second"], default=None)
    if single is not None:
        counts = sorted({r["workers"] for r in rows})
        axis.plot(counts, [k * single["steps_per_second"] for k in counts], "k:", label="perfect scaling")
    axis.set_xlabel("workers")
    axis.set_ylabel("sampling steps/s")
    axis.set_xscale("log", base=2)
    axis.set_yscale("log", base=2)
    axis.set_title("Sampling a 2 ms/step environment, 8 environments")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--backends", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    parser.add_argument("--steps", type=int, default=2048, help="steps per collection (a multiple of 8)")
    parser.add_argument("--collects", type=int, default=3)
    parser.add_argument("--step-ms", type=float, default=2.0)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "scaling"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    # Worker processes and Ray actors import padded_env from here by the environment id.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, HERE)
    rows = []
    for backend in args.backends:
        if backend == "ray":
            import ray

            ray.init(num_cpus=max(args.workers), log_to_driver=False, include_dashboard=False)
        single = None
        for workers in args.workers:
            rate = measure(backend, workers, args.steps, args.collects, args.step_ms / 1000)
            single = single or (rate if workers == 1 else None)
            efficiency = rate / (workers * single) if single else float("nan")
            rows.append({"backend": backend, "workers": workers, "steps_per_second": rate, "efficiency": efficiency})
            print(f"{backend:5s} {workers} workers: {rate:8.0f} steps/s, efficiency {efficiency:.2f}", flush=True)
        if backend == "ray":
            ray.shutdown()
    with open(os.path.join(args.out, "scaling.json"), "w") as handle:
        json.dump({"step_ms": args.step_ms, "steps": args.steps, "collects": args.collects, "n_envs": 8,
                   "cpus": os.cpu_count(), "rows": rows}, handle, indent=1)
    print(write_table(rows, os.path.join(args.out, "scaling.md")))
    plot(rows, os.path.join(args.out, "scaling.png"))


if __name__ == "__main__":
    main()
