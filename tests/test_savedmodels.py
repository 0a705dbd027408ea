"""Every policy shipped in savedmodels/ reloads with TensorFlow alone and still scores what its
metadata says: the first episodes are replayed, through ``serving_default``, with the recorded
evaluation seeds."""

import json
import os

import gymnasium as gym
import pytest
import tensorflow as tf

from trpo_tf.evaluation import run_episodes

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "savedmodels")
SHIPPED = sorted(name for name in os.listdir(ROOT) if os.path.isdir(os.path.join(ROOT, name)))
EPISODES = 3


def latest_version(model_dir: str) -> str:
    versions = [int(name) for name in os.listdir(model_dir) if name.isdigit()]
    return os.path.join(model_dir, str(max(versions)))


def test_the_promised_policies_are_shipped():
    assert {"CartPole-v1", "Pendulum-v1", "HalfCheetah-v5"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_policy_replays_its_recorded_evaluation(name):
    path = latest_version(os.path.join(ROOT, name))
    size = sum(os.path.getsize(os.path.join(folder, f)) for folder, _, files in os.walk(path) for f in files)
    assert size < 1_000_000, f"{path} is {size:,} bytes"
    with open(os.path.join(path, "assets", "metadata.json")) as handle:
        metadata = json.load(handle)
    evaluation = metadata["evaluation"]
    assert metadata["env_id"] == name and evaluation["deterministic"] and evaluation["episodes"] >= 10
    assert metadata["command"].startswith("trpo-tf train")
    policy = tf.saved_model.load(path).signatures["serving_default"]
    env = gym.make(name, **metadata["config"].get("env_kwargs", {}))  # as it was trained (Ant: no contact forces)
    replayed = run_episodes(env, lambda observations: policy(observation=tf.constant(observations, tf.float32))[
        "action"].numpy(), EPISODES, evaluation["seed"])["returns"]
    # The export computes actions in float32 TensorFlow, the recorded evaluation in NumPy. They
    # agree to ~1e-7, but a 1,000-step MuJoCo episode amplifies that into a different episode
    # (seen: 4,256 vs 4,572 for the same seed), so the replay is held to the recorded
    # distribution: its mean within 3 recorded standard deviations (at least 5%) of the record.
    recorded = evaluation["returns"][:EPISODES]
    tolerance = max(3 * evaluation["std_return"], 0.05 * abs(evaluation["mean_return"]), 5.0)
    assert abs(sum(replayed) / EPISODES - sum(recorded) / EPISODES) <= tolerance, (replayed, recorded)


def test_half_cheetah_policy_scores_at_least_1500():
    """Its recorded 10-episode evaluation; the replay test above checks the record holds."""
    with open(os.path.join(latest_version(os.path.join(ROOT, "HalfCheetah-v5")), "assets", "metadata.json")) as f:
        assert json.load(f)["evaluation"]["mean_return"] >= 1500
