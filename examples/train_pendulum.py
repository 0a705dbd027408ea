"""Train TRPO on Pendulum-v1 (continuous actions) with the packaged preset, and export it.

    python examples/train_pendulum.py

The preset (trpo_tf/presets/Pendulum-v1.yaml) holds the hyperparameters and the default
length of a run; any field can be changed with ``config.replace(...)``.
"""

from trpo_tf import TRPO, TRPOConfig, presets

config = TRPOConfig.preset("Pendulum-v1")
_, timesteps = presets.load("Pendulum-v1")  # the preset's run length
agent = TRPO("Pendulum-v1", config, seed=0)


def report(entry):
    """Called after every iteration; returning False would stop training."""
    if entry["iteration"] % 20 == 0:
        print(f"{entry['timesteps']:>8,} steps  mean return {entry['episode_return_mean']:8.1f}  "
              f"KL {entry['kl']:.4f}")


agent.learn(timesteps, callback=report)
evaluation = agent.evaluate(episodes=10)
print(f"evaluation: {evaluation['mean_return']:.1f} ± {evaluation['std_return']:.1f}")

path = agent.export("exported/Pendulum-v1", episodes=10)  # evaluated through the SavedModel itself
print(f"SavedModel written to {path}")
