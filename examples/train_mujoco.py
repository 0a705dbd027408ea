"""Train TRPO on a MuJoCo task (default HalfCheetah-v5), checkpointing as it goes, and export it.

    python examples/train_mujoco.py                # HalfCheetah-v5
    python examples/train_mujoco.py Hopper-v5 200000

Uses the packaged preset for the environment when there is one. Checkpoints go to
runs/example-<env id>/ every 10 iterations; if the script is interrupted, running it again
continues from the last checkpoint.
"""

import os
import sys

from trpo_tf import TRPO, TRPOConfig, checkpoint, presets

env_id = sys.argv[1] if len(sys.argv) > 1 else "HalfCheetah-v5"
preset = presets.load(env_id)
fields, timesteps = preset if preset is not None else ({}, 1_000_000)
if len(sys.argv) > 2:
    timesteps = int(sys.argv[2])
run_dir = f"runs/example-{env_id}"

if checkpoint.checkpoints(run_dir):  # the newest intact one is used; damaged ones are skipped
    agent = TRPO.load(run_dir, resume=True)  # our own run: restoring its environments is safe
    print(f"continuing {run_dir} from {agent.timesteps:,} timesteps")
else:
    agent = TRPO(env_id, TRPOConfig.from_dict(fields), seed=0)


def every_iteration(entry):
    if entry["iteration"] % 10 == 0:
        agent.save(run_dir)
        print(f"{entry['timesteps']:>9,} steps  mean return {entry['episode_return_mean']:9.1f}  "
              f"{entry['fps']:6.0f} steps/s")


agent.learn(total_timesteps=timesteps, callback=every_iteration)
agent.save(run_dir)

evaluation = agent.evaluate(episodes=5)
print(f"evaluation: {evaluation['mean_return']:.1f} ± {evaluation['std_return']:.1f}")
path = agent.export(os.path.join("exported", env_id), evaluation=evaluation)
print(f"SavedModel written to {path}")
