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
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

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


def sb3_steps_per_second(env_id: str, steps: int) -> float:
    import torch
    from sb3_contrib import TRPO as SB3TRPO

    model = SB3TRPO("MlpPolicy", env_id, n_steps=2048, batch_size=128, gamma=0.99, gae_lambda=0.95,
                    cg_max_steps=15, cg_damping=0.1, line_search_shrinking_factor=0.8, line_search_max_iter=10,
                    n_critic_updates=10, target_kl=0.01, learning_rate=1e-3, seed=0, device="cpu",
                    policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=torch.nn.Tanh))
    model.learn(2048)  # warm-up
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20480, help="timed steps per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the libraries")
    parser.add_argument("--envs", nargs="+", default=ENVS)
    args = parser.parse_args()
    runs = {
        "trpo_tf": lambda env: trpo_tf_steps_per_second(env, args.steps, MATCHED),
        "trpo_tf GN": lambda env: trpo_tf_steps_per_second(env, args.steps, MATCHED.replace(hvp_method="gauss_newton")),
        "trpo_tf GN 4 envs": lambda env: trpo_tf_steps_per_second(
            env, args.steps, MATCHED.replace(hvp_method="gauss_newton", n_envs=4)),
        "sb3-contrib": lambda env: sb3_steps_per_second(env, args.steps),
        "raw env": lambda env: raw_env_steps_per_second(env, args.steps),
    }
    results = {env: {name: [] for name in runs} for env in args.envs}
    for round_ in range(args.rounds):
        for env in args.envs:
            for name, run in runs.items():
                results[env][name].append(run(env))
                print(f"round {round_ + 1} {env:>15} {name:>18}: {results[env][name][-1]:8.0f} steps/s", flush=True)
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
