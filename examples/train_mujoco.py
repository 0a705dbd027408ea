"""Train TRPO on a MuJoCo task (default HalfCheetah-v5), logging and checkpointing as it goes, and export it.

    python examples/train_mujoco.py                # HalfCheetah-v5
    python examples/train_mujoco.py Hopper-v5 200000

Uses the packaged preset for the environment when there is one. The run is logged to
runs/example-<env id>/ as `trpo-tf train` logs one (progress.csv, TensorBoard, a checkpoint
every 10 iterations); if the script is interrupted, running it again finishes the run from
the last checkpoint.
"""

import os
import sys

from trpo_tf import TRPO, TRPOConfig, checkpoint, presets

env_id = sys.argv[1] if len(sys.argv) > 1 else "HalfCheetah-v5"
preset = presets.load(env_id)
config, timesteps = (TRPOConfig.preset(env_id), preset[1] or 1_000_000) if preset else (TRPOConfig(), 1_000_000)
if len(sys.argv) > 2:
    timesteps = int(sys.argv[2])
run_dir = f"runs/example-{env_id}"

if checkpoint.checkpoints(run_dir):  # the newest intact one is used; damaged ones are skipped
    agent = TRPO.load(run_dir, resume=True)  # our own run: restoring its environments is safe
    print(f"continuing {run_dir} from {agent.timesteps:,} timesteps")
else:
    agent = TRPO(env_id, config, seed=0)

# learn() adds steps: train what the run has left
agent.learn(max(0, timesteps - agent.timesteps), log_dir=run_dir, progress_bar=True)

evaluation = agent.evaluate(episodes=5)
print(f"evaluation: {evaluation['mean_return']:.1f} ± {evaluation['std_return']:.1f}")
path = agent.export(os.path.join("exported", env_id), episodes=5)  # evaluated through the SavedModel itself
print(f"SavedModel written to {path}")
agent.close()
