"""Training throughput of trpo_tf against sb3-contrib's TRPO at matched settings.

    pip install -e '.[bench]'
    python benchmarks/compare_sb3.py [--steps 20480] [--rounds 3] [--envs HalfCheetah-v5 ...]

Both libraries train with 2048 steps per iteration on one environment, 64×64 tanh networks,
15 CG iterations, damping 0.1, line-search factor 0.8 with 10 steps, max KL 0.01, 10 value
epochs of minibatches of 128, γ 0.99, λ 0.95, on the CPU. Each measurement times
``learn(--steps)`` after one warm-up iteration (TensorFlow traces its graphs, PyTorch warms
up), alternating the libraries ``--rounds`` times; the table shows medians. "raw env" is one
environment stepped with pre-drawn random actions. trpo_tf is also run with
``hvp_method="gauss_newton"`` and with 4 environments.

    python benchmarks/compare_sb3.py --best [--envs HalfCheetah-v5 Hopper-v5]

"Best configuration": each library at its fastest setting here for the same 2048 steps per
iteration and networks: trpo_tf over ``n_envs``, workers and ``hvp_method``; sb3-contrib over
``n_envs`` with ``DummyVecEnv`` and ``SubprocVecEnv`` (``n_steps = 2048 / n_envs``). Every
candidate is measured in each round (alternating); the table gives each library's fastest
median.

    python benchmarks/compare_sb3.py --end-to-end 40960

End to end: the wall time of a fresh ``python`` process that imports the library, builds the
agent and trains 40,960 steps at the matched settings (trpo_tf also at its best setting), as
a user's script would, alternating the libraries ``--rounds`` times.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np

from sb3_settings import sb3_model
from trpo_tf import TRPO, TRPOConfig

ENVS = ["HalfCheetah-v5", "Hopper-v5", "Pendulum-v1", "CartPole-v1"]
MATCHED = TRPOConfig(steps_per_iteration=2048, n_envs=1, policy_hidden=(64, 64), value_hidden=(64, 64),
                     activation="tanh", cg_iters=15, cg_damping=0.1, line_search_coef=0.8,
                     line_search_max_steps=10, max_kl=0.01, value_epochs=10, value_batch_size=128,
                     value_lr=1e-3, gamma=0.99, gae_lambda=0.95)


def raw_env_steps_per_second(env_id: str, steps: int) -> float:
    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(steps)]
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def trpo_tf_steps_per_second(env_id: str, steps: int, config: TRPOConfig) -> float:
    agent = TRPO(env_id, config, seed=0)
    agent.learn(config.steps_per_iteration)  # warm-up: traces the compiled graphs
    start = time.perf_counter()
    agent.learn(steps)
    return (agent.timesteps - config.steps_per_iteration) / (time.perf_counter() - start)


def sb3_steps_per_second(env_id: str, steps: int, n_envs: int = 1, subprocesses: bool = False) -> float:
    model = sb3_model(env_id, n_envs, subprocesses)
    model.learn(2048)  # warm-up
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    seconds = time.perf_counter() - start
    model.get_env().close()
    return steps / seconds


# The candidates of the "best configuration" table: name → trpo_tf config changes / sb3 (n_envs, subprocesses).
TRPO_TF_CANDIDATES = {
    "1 env": {},
    "1 env, GN": {"hvp_method": "gauss_newton"},
    "4 envs, GN": {"n_envs": 4, "hvp_method": "gauss_newton"},
    "2 workers × 1 env, GN": {"n_envs": 2, "n_workers": 2, "hvp_method": "gauss_newton"},
    "2 workers × 2 envs, GN": {"n_envs": 4, "n_workers": 2, "hvp_method": "gauss_newton"},
    "2 workers × 4 envs, GN": {"n_envs": 8, "n_workers": 2, "hvp_method": "gauss_newton"},
    "2 workers × 8 envs, GN": {"n_envs": 16, "n_workers": 2, "hvp_method": "gauss_newton"},
}
SB3_CANDIDATES = {
    "DummyVecEnv × 1": (1, False),
    "DummyVecEnv × 4": (4, False),
    "DummyVecEnv × 8": (8, False),
    "DummyVecEnv × 16": (16, False),
    "DummyVecEnv × 32": (32, False),
    "SubprocVecEnv × 2": (2, True),
    "SubprocVecEnv × 4": (4, True),
}


def trpo_tf_closing_steps_per_second(env_id: str, steps: int, config: TRPOConfig) -> float:
    """:func:`trpo_tf_steps_per_second`, closing the agent (and its workers) afterwards."""
    with TRPO(env_id, config, seed=0) as agent:
        agent.learn(config.steps_per_iteration)  # warm-up: traces the compiled graphs, starts the episodes
        start = time.perf_counter()
        agent.learn(steps)
        return (agent.timesteps - config.steps_per_iteration) / (time.perf_counter() - start)


def best_configuration(envs: list[str], steps: int, rounds: int) -> None:
    """Measure every candidate of both libraries, alternating, and print each library's fastest."""
    runs = {f"trpo_tf {name}": (lambda env, changes=changes: trpo_tf_closing_steps_per_second(
        env, steps, MATCHED.replace(**changes))) for name, changes in TRPO_TF_CANDIDATES.items()}
    runs.update({f"sb3-contrib {name}": (lambda env, setting=setting: sb3_steps_per_second(env, steps, *setting))
                 for name, setting in SB3_CANDIDATES.items()})
    runs["raw env"] = lambda env: raw_env_steps_per_second(env, steps)
    results = measure_alternating(runs, envs, rounds)
    print()
    print("| environment | trpo_tf fastest | setting | sb3-contrib fastest | setting | trpo_tf / sb3 | raw env "
          "| trpo_tf / raw |")
    print("|---|---:|---|---:|---|---:|---:|---:|")
    for env in envs:
        medians = {name: float(np.median(values)) for name, values in results[env].items()}
        ours = max((n for n in medians if n.startswith("trpo_tf")), key=medians.__getitem__)
        theirs = max((n for n in medians if n.startswith("sb3")), key=medians.__getitem__)
        print(f"| {env} | {medians[ours]:,.0f} | {ours[len('trpo_tf '):]} | {medians[theirs]:,.0f} "
              f"| {theirs[len('sb3-contrib '):]} | {medians[ours] / medians[theirs]:.1f}× | {medians['raw env']:,.0f} "
              f"| {medians[ours] / medians['raw env']:.0%} |")


END_TO_END_TRPO_TF = """
import sys, time
start = time.perf_counter()
from trpo_tf import TRPO, TRPOConfig
changes = eval(sys.argv[3])
config = TRPOConfig(steps_per_iteration=2048, n_envs=1, policy_hidden=(64, 64), value_hidden=(64, 64),
                    activation="tanh", cg_iters=15, cg_damping=0.1, line_search_coef=0.8, line_search_max_steps=10,
                    max_kl=0.01, value_epochs=10, value_batch_size=128, value_lr=1e-3, gamma=0.99,
                    gae_lambda=0.95).replace(**changes)
with TRPO(sys.argv[1], config, seed=0) as agent:
    agent.learn(int(sys.argv[2]))
print(time.perf_counter() - start)
"""

END_TO_END_SB3 = """
import sys, time
start = time.perf_counter()
sys.path.insert(0, sys.argv[3])
from sb3_settings import sb3_model  # imports neither trpo_tf nor TensorFlow
sb3_model(sys.argv[1]).learn(int(sys.argv[2]))
print(time.perf_counter() - start)
"""


def end_to_end(envs: list[str], steps: int, rounds: int) -> None:
    """Wall time of a fresh process that imports, builds and trains ``steps`` steps, per library."""
    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    commands = {
        "trpo_tf": lambda env: [sys.executable, "-c", END_TO_END_TRPO_TF, env, str(steps), "{}"],
        "trpo_tf 2 workers × 2 envs, GN": lambda env: [
            sys.executable, "-c", END_TO_END_TRPO_TF, env, str(steps),
            "{'n_envs': 4, 'n_workers': 2, 'hvp_method': 'gauss_newton'}"],
        "sb3-contrib": lambda env: [sys.executable, "-c", END_TO_END_SB3, env, str(steps), here],
    }

    def run(command: list[str]) -> float:
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        return time.perf_counter() - start

    runs = {name: (lambda env, command=command: run(command(env))) for name, command in commands.items()}
    results = measure_alternating(runs, envs, rounds, unit="s")
    print()
    print("| environment | trpo_tf | trpo_tf, 2 workers × 2 envs, GN | sb3-contrib | sb3 / trpo_tf | sb3 / best |")
    print("|---|---:|---:|---:|---:|---:|")
    for env in envs:
        m = {name: float(np.median(values)) for name, values in results[env].items()}
        best = m["trpo_tf 2 workers × 2 envs, GN"]
        print(f"| {env} | {m['trpo_tf']:.1f} s | {best:.1f} s | {m['sb3-contrib']:.1f} s "
              f"| {m['sb3-contrib'] / m['trpo_tf']:.1f}× | {m['sb3-contrib'] / best:.1f}× |")


def measure_alternating(runs: dict, envs: list[str], rounds: int, unit: str = "steps/s") -> dict:
    """``runs[name](env)`` for every env and name, ``rounds`` times in turn; {env: {name: [values]}}."""
    results: dict = {env: {name: [] for name in runs} for env in envs}
    for round_ in range(rounds):
        for env in envs:
            for name, run in runs.items():
                results[env][name].append(run(env))
                print(f"round {round_ + 1} {env:>15} {name:>36}: {results[env][name][-1]:10.2f} {unit}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20480, help="timed steps per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the libraries")
    parser.add_argument("--envs", nargs="+", default=None)
    parser.add_argument("--best", action="store_true", help="the best-configuration table")
    parser.add_argument("--end-to-end", type=int, metavar="STEPS", help="fresh-process wall time for STEPS steps")
    args = parser.parse_args()
    if args.best:
        return best_configuration(args.envs or ["HalfCheetah-v5", "Hopper-v5"], args.steps, args.rounds)
    if args.end_to_end:
        return end_to_end(args.envs or ["HalfCheetah-v5", "Hopper-v5"], args.end_to_end, args.rounds)
    args.envs = args.envs or ENVS
    runs = {
        "trpo_tf": lambda env: trpo_tf_steps_per_second(env, args.steps, MATCHED),
        "trpo_tf GN": lambda env: trpo_tf_steps_per_second(env, args.steps, MATCHED.replace(hvp_method="gauss_newton")),
        "trpo_tf GN 4 envs": lambda env: trpo_tf_steps_per_second(
            env, args.steps, MATCHED.replace(hvp_method="gauss_newton", n_envs=4)),
        "sb3-contrib": lambda env: sb3_steps_per_second(env, args.steps),
        "raw env": lambda env: raw_env_steps_per_second(env, args.steps),
    }
    results = measure_alternating(runs, args.envs, args.rounds)
    print()
    print("| environment | trpo_tf | trpo_tf GN | trpo_tf GN, 4 envs | sb3-contrib | trpo_tf / sb3 | GN / sb3 "
          "| raw env | trpo_tf / raw | GN / raw |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for env in args.envs:
        m = {name: float(np.median(values)) for name, values in results[env].items()}
        print(f"| {env} | {m['trpo_tf']:,.0f} | {m['trpo_tf GN']:,.0f} | {m['trpo_tf GN 4 envs']:,.0f} "
              f"| {m['sb3-contrib']:,.0f} | {m['trpo_tf'] / m['sb3-contrib']:.1f}× "
              f"| {m['trpo_tf GN'] / m['sb3-contrib']:.1f}× | {m['raw env']:,.0f} "
              f"| {m['trpo_tf'] / m['raw env']:.0%} | {m['trpo_tf GN'] / m['raw env']:.0%} |")


if __name__ == "__main__":
    main()
