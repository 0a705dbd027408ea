"""Re-export the shipped policies with today's exporter: same weights, today's graph, and an evaluation
measured through the new graph (what ``trpo-tf evaluate EXPORT`` reproduces).

    python tools/reexport_savedmodels.py                 # every version of every model in savedmodels/
    python tools/reexport_savedmodels.py Pendulum-v1     # the versions of some models

For each version folder: rebuild the agent from the metadata's environment, config and seed (sampling
in this process), copy the old SavedModel's variables into it by name, export it to a staging folder
with the same version number, episodes and evaluation seed, and check that every deterministic
signature of the new export answers as the old one on random observations before the new folder
replaces the old. Prints one line per version: the old and the new recorded evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import trpo_tf  # noqa: E402

trpo_tf.quiet()
import tensorflow as tf  # noqa: E402

from trpo_tf import TRPO, TRPOConfig, export  # noqa: E402


def copy_weights(old: tf.Module, agent: TRPO) -> None:
    """The old export's variables into the agent's policy and value, matched by name (a head's free
    parameter by its last name: older exports named the Gaussian's log-std ``policy/log_std``)."""
    saved = {variable.name.removesuffix(":0"): variable for variable in old.tracked_variables}
    targets = list(agent.policy.weights) + list(agent.value.weights)
    if len(saved) != len(targets):
        raise SystemExit(f"{len(saved)} saved variables, {len(targets)} in the rebuilt agent")
    for target in targets:
        source = saved[target.path] if target.path in saved else _unique_by_last_name(saved, target.path)
        if tuple(source.shape) != tuple(target.shape):
            raise SystemExit(f"{target.path}: saved shape {source.shape}, rebuilt {target.shape}")
        target.assign(source.numpy())


def _unique_by_last_name(saved: dict, path: str) -> tf.Variable:
    last = path.rsplit("/", 1)[-1]
    matches = [variable for name, variable in saved.items() if name.rsplit("/", 1)[-1] == last]
    if len(matches) != 1:
        raise SystemExit(f"no single saved variable for {path} (candidates: {len(matches)})")
    return matches[0]


def check_same_answers(old_dir: str, new_dir: str, observation_space: object) -> float:
    """Largest difference between the two exports' deterministic signatures on 64 random observations."""
    old, new = tf.saved_model.load(old_dir), tf.saved_model.load(new_dir)
    rng = np.random.default_rng(0)
    observations = np.stack([observation_space.sample() for _ in range(64)]).astype(np.float32)  # type: ignore[attr-defined]
    observations += rng.normal(size=observations.shape).astype(np.float32) * 0.1
    worst = 0.0
    for name in export.DETERMINISTIC_SIGNATURES:
        before = old.signatures[name](observation=tf.constant(observations))
        after = new.signatures[name](observation=tf.constant(observations))
        for key, value in before.items():
            difference = float(np.max(np.abs(value.numpy().astype(np.float64) - after[key].numpy())))
            if difference > 1e-5:
                raise SystemExit(f"{new_dir}: {name}/{key} differs from the old export by {difference}")
            worst = max(worst, difference)
    return worst


def reexport(version_dir: str) -> str:
    metadata = export.read_metadata(version_dir)
    config = TRPOConfig.from_dict(metadata["config"]).replace(n_workers=1, sampler="local", restart_workers=False)
    recorded = metadata["evaluation"]
    with TRPO(metadata["env_id"], config, seed=metadata["seed"]) as agent:
        copy_weights(tf.saved_model.load(version_dir), agent)
        agent.timesteps = int(metadata["timesteps"])
        staging = tempfile.mkdtemp(prefix=".reexport-", dir=os.path.dirname(version_dir))
        try:
            version = int(os.path.basename(version_dir))
            path = agent.export(staging, version=version, episodes=recorded["episodes"], seed=recorded["seed"],
                                command=metadata["command"])
            worst = check_same_answers(version_dir, path, agent.observation_space)
            retired = version_dir + ".old"
            os.rename(version_dir, retired)
            os.rename(path, version_dir)
            shutil.rmtree(retired)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    new = export.read_metadata(version_dir)["evaluation"]
    return (f"{version_dir}: recorded {recorded['mean_return']:,.2f} ± {recorded['std_return']:,.2f} (NumPy copy), "
            f"now {new['mean_return']:,.2f} ± {new['std_return']:,.2f} through the export "
            f"({new['episodes']} episodes from seed {new['seed']}; signatures agree to {worst:.1e})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="model folders in --models (default: all)")
    parser.add_argument("--models", default=os.path.join(REPO, "savedmodels"))
    args = parser.parse_args()
    names = args.names or sorted(name for name in os.listdir(args.models)
                                 if os.path.isdir(os.path.join(args.models, name)))
    for name in names:
        folder = os.path.join(args.models, name)
        for version in sorted((entry for entry in os.listdir(folder) if entry.isdigit()), key=int):
            print(reexport(os.path.join(folder, version)), flush=True)


if __name__ == "__main__":
    main()
