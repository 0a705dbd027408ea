"""Train TRPO on CartPole-v1, evaluate it, and export the policy as a SavedModel.

    python examples/train_cartpole.py

Takes about ten seconds on a laptop CPU; the deterministic policy then balances the pole
for the full 500 steps.
"""

from trpo_tf import TRPO, TRPOConfig

config = TRPOConfig(steps_per_iteration=2048, max_kl=0.01)
agent = TRPO("CartPole-v1", config, seed=0)
agent.learn(total_timesteps=100_000)

last = agent.history[-1]
print(f"trained {agent.timesteps:,} timesteps; mean return of the last 100 episodes: "
      f"{last['episode_return_mean']:.1f}")

evaluation = agent.evaluate(episodes=10)  # deterministic actions, separate environment
print(f"evaluation: {evaluation['mean_return']:.1f} ± {evaluation['std_return']:.1f}")

agent.save("runs/example-cartpole")  # a resumable checkpoint: TRPO.load("runs/example-cartpole")
path = agent.export("exported/CartPole-v1", episodes=10)  # evaluated through the SavedModel itself
print(f"SavedModel written to {path}")
