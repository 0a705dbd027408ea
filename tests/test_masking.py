"""Action masking: the masked distributions against closed forms, the masks' sources and checks, training
(in process, in workers, resumed), predict, evaluation, callbacks and every export format.

Oracles are written here: masked softmax, entropy and KL from the logits of the allowed actions only;
the explicit Hessian of that KL (tests/curvature.py); and the masks of every state recomputed from
its observation (masked_envs.mask_of) or, for Taxi-v4, from the environment's own ``action_mask(state)``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

import masked_envs
from curvature import assert_curvature_product_matches, explicit_hessian
from masked_envs import GATE_ID, mask_of
from trpo_tf import TRPO, TRPOConfig
from trpo_tf.config import HVP_METHODS
from trpo_tf.errors import ActionMaskError, ConfigError, InputError, UnsupportedSpaceError
from trpo_tf.policies import action_head, make_policy
from trpo_tf.sampling import InProcessSampler, SerialVectorEnv

SMALL = TRPOConfig(steps_per_iteration=64, n_envs=2, policy_hidden=(8,), value_hidden=(8,), value_epochs=1)
OBSERVATIONS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
DISCRETE, MULTI = gym.spaces.Discrete(5), gym.spaces.MultiDiscrete([3, 2, 4])


# --------------------------------------------------------------------------- closed forms (the oracles)

def components(space):
    """(sizes, offsets into the concatenated mask, offsets into the padded outputs) of each component."""
    sizes = [int(space.n)] if isinstance(space, gym.spaces.Discrete) else [int(n) for n in space.nvec]
    width = max(sizes)
    return sizes, np.cumsum([0] + sizes[:-1]), [k * width for k in range(len(sizes))]


def masked_log_probs(logits, mask):
    """log π over the allowed entries of each row (float64; -inf where forbidden)."""
    logits = np.where(mask, logits.astype(np.float64), -np.inf)
    top = logits.max(axis=1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))


def per_component(space, outputs, mask, function):
    """Σ over components of ``function(component logits, component mask)`` [B]."""
    sizes, mask_offsets, output_offsets = components(space)
    return sum(function(outputs[:, o:o + n], mask[:, m:m + n]) for n, m, o in zip(sizes, mask_offsets, output_offsets))


def per_component_kl(space, old, new, mask):
    """Σ over components of KL(old ‖ new) over the allowed actions [B]."""
    sizes, mask_offsets, output_offsets = components(space)
    return sum(kl_by_formula(old[:, o:o + n], new[:, o:o + n], mask[:, m:m + n])
               for n, m, o in zip(sizes, mask_offsets, output_offsets))


def entropy_by_formula(logits, mask):
    log_p = masked_log_probs(logits, mask)
    return -np.where(mask, np.exp(log_p) * np.where(mask, log_p, 0.0), 0.0).sum(axis=1)


def kl_by_formula(old, new, mask):
    log_p, log_q = masked_log_probs(old, mask), masked_log_probs(new, mask)
    return np.where(mask, np.exp(log_p) * (np.where(mask, log_p, 0.0) - np.where(mask, log_q, 0.0)), 0.0).sum(axis=1)


def random_masks(space, rows, rng, single=0):
    """Random masks [rows, M] with an allowed action in each component; the first ``single`` rows allow exactly one."""
    sizes, offsets, _ = components(space)
    mask = rng.random((rows, sum(sizes))) < 0.5
    for n, m in zip(sizes, offsets):
        chosen = rng.integers(n, size=rows)
        mask[np.arange(rows), m + chosen] = True
        mask[:single, m:m + n] = False
        mask[np.arange(single), m + chosen[:single]] = True
    return mask


# --------------------------------------------------------------------------- the distributions

@pytest.mark.parametrize("space", [DISCRETE, MULTI], ids=["discrete", "multidiscrete"])
def test_masked_probabilities_entropy_and_kl_equal_the_closed_forms_over_the_allowed_actions(space):
    rng = np.random.default_rng(0)
    head = action_head(space, masked=True)
    rows = 64
    old, new = (rng.normal(scale=2.0, size=(rows, head.param_size)).astype(np.float32) for _ in range(2))
    mask = random_masks(space, rows, rng, single=8)  # rows 0-7: one allowed action (per component)

    def distribution(outputs):
        return head.distribution(head.distribution_parameters(tf.constant(outputs), tf.constant(mask)))

    from trpo_tf.policies import kl_divergence
    p, q = distribution(old), distribution(new)
    entropy, kl = p.entropy().numpy(), kl_divergence(p, q).numpy()
    np.testing.assert_allclose(entropy, per_component(space, old, mask, entropy_by_formula), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(kl, per_component_kl(space, old, new, mask), rtol=1e-4, atol=1e-6)
    assert np.all(np.isfinite(entropy)) and np.all(np.isfinite(kl))
    assert np.all(entropy[:8] == 0.0) and np.all(kl[:8] == 0.0)  # one allowed action: nothing to spread, nothing moves
    assert not np.allclose(kl[8:], per_component_kl(space, old, new, np.ones_like(mask))[8:], rtol=1e-2)

    # Every forbidden action has probability exactly 0 and a finite log-probability.
    logits = head.named_parameters(head.distribution_parameters(tf.constant(old), tf.constant(mask)))["logits"]
    sizes, offsets, _ = components(space)
    probabilities = tf.nn.softmax(tf.reshape(logits, [rows, len(sizes), -1])).numpy()
    for k, (n, m) in enumerate(zip(sizes, offsets)):
        assert np.all(probabilities[:, k, :n][~mask[:, m:m + n]] == 0.0)
        np.testing.assert_allclose(probabilities[:, k, :n][mask[:, m:m + n]],
                                   np.exp(masked_log_probs(old[:, k * max(sizes):k * max(sizes) + n],
                                                           mask[:, m:m + n]))[mask[:, m:m + n]], rtol=1e-4)
    forbidden = np.stack([np.argmin(mask[:, m:m + n] + 0.0, axis=1) for n, m in zip(sizes, offsets)], axis=1)
    has_forbidden = np.all([~mask[:, m:m + n].all(axis=1) for n, m in zip(sizes, offsets)], axis=0)
    log_prob = p.log_prob(tf.constant(forbidden.reshape((rows,) + head.action_shape), tf.int32)).numpy()
    assert np.all(np.isfinite(log_prob)) and np.all(log_prob[has_forbidden] < -1e8)



@pytest.mark.parametrize("space", [DISCRETE, MULTI], ids=["discrete", "multidiscrete"])
def test_draws_follow_the_masked_probabilities_and_never_take_a_forbidden_action(space):
    """NumPy (rollouts) and TensorFlow (exports) sides; the deterministic action is the best allowed one
    even when every allowed action is far less probable than the forbidden ones."""
    rng = np.random.default_rng(1)
    head = action_head(space, masked=True)
    distribution, sizes, offsets = head.action_distribution, *components(space)[:2]
    outputs = np.tile(rng.normal(size=(1, head.param_size)).astype(np.float32), (20000, 1))
    mask = np.tile(random_masks(space, 1, rng), (20000, 1))
    parameters = head.distribution_parameters(tf.constant(outputs), tf.constant(mask))
    for draws in (distribution.actions(outputs, {}, rng, mask)[1],
                  head.sample(parameters).numpy() - np.asarray(getattr(space, "start", 0))):
        choices = draws.reshape(20000, -1)
        width = max(sizes)
        for k, (n, m) in enumerate(zip(sizes, offsets)):
            expected = np.exp(masked_log_probs(outputs[:1, k * width:k * width + n], mask[:1, m:m + n]))[0]
            frequencies = np.bincount(choices[:, k], minlength=n) / 20000
            assert np.all(frequencies[~mask[0, m:m + n]] == 0.0)
            np.testing.assert_allclose(frequencies, expected, atol=4 * np.sqrt(0.25 / 20000))

    low = np.where(np.arange(head.param_size) % max(sizes) == 0, -50.0, 50.0).astype(np.float32)[None]
    allowed_first = np.zeros((1, sum(sizes)), bool)
    allowed_first[0, offsets] = True  # only choice 0 of each component, the least probable by far
    expected = np.zeros((1,) + head.action_shape, np.int64)
    assert np.array_equal(distribution.actions(low, {}, None, allowed_first)[1], expected)
    assert np.array_equal(head.deterministic(head.distribution_parameters(tf.constant(low), tf.constant(
        allowed_first))).numpy(), expected)


def small_policy(space, masked=True, seed=2):
    policy = make_policy(OBSERVATIONS, space, (4,), "tanh", 0.0, normalize_observations=True, seed=seed,
                         action_masks=masked)
    kernel = policy.network.layers[-1].kernel  # off its near-zero initialization: distributions differ by state
    kernel.assign(np.random.default_rng(seed).normal(scale=0.8, size=kernel.shape).astype(np.float32))
    return policy


@pytest.mark.parametrize("space, method", [(gym.spaces.MultiDiscrete([3, 2]), method) for method in HVP_METHODS]
                         + [(gym.spaces.Discrete(4), "forward_over_backward")],
                         ids=[f"multidiscrete-{method}" for method in HVP_METHODS] + ["discrete-forward_over_backward"])
def test_curvature_product_equals_the_explicit_hessian_of_the_masked_kl(space, method):
    policy = small_policy(space)
    rng = np.random.default_rng(3)
    features = tf.constant(rng.normal(size=(32, 3)).astype(np.float32))
    mask = random_masks(space, 32, rng, single=6)
    variables = policy.trainable_parameters()
    old = policy.network(features).numpy()
    theta = tf.concat([tf.reshape(v, [-1]) for v in variables], axis=0)
    sizes, mask_offsets, output_offsets = components(space)

    def masked_kl(logits_old, logits_new, allowed):
        """KL over the allowed entries, written with their own normalizer (no large negative logits)."""
        top = tf.reduce_max(tf.where(allowed, logits_old, -np.inf), axis=1, keepdims=True)
        log_p = logits_old - top - tf.math.log(tf.reduce_sum(tf.where(allowed, tf.exp(logits_old - top), 0.0), 1,
                                                             keepdims=True))
        top_new = tf.stop_gradient(tf.reduce_max(tf.where(allowed, logits_new, -np.inf), axis=1, keepdims=True))
        log_q = logits_new - top_new - tf.math.log(tf.reduce_sum(tf.where(allowed, tf.exp(logits_new - top_new), 0.0),
                                                                 1, keepdims=True))
        return tf.reduce_sum(tf.where(allowed, tf.exp(log_p) * (log_p - log_q), 0.0), axis=1)

    def mean_kl(flat, allowed=mask):
        shapes = [v.shape for v in variables]
        kernel_1, bias_1, kernel_2, bias_2 = [tf.reshape(piece, shape) for piece, shape in zip(
            tf.split(flat, [int(np.prod(shape)) for shape in shapes]), shapes)]
        new = tf.tanh(features @ kernel_1 + bias_1) @ kernel_2 + bias_2
        return tf.reduce_mean(sum(masked_kl(old[:, o:o + n], new[:, o:o + n], allowed[:, m:m + n])
                                  for n, m, o in zip(sizes, mask_offsets, output_offsets)))

    hessian = explicit_hessian(mean_kl, theta)
    unmasked = explicit_hessian(lambda flat: mean_kl(flat, np.ones_like(mask)), theta)
    assert np.abs(hessian - unmasked).max() > 0.05 * np.abs(unmasked).max()  # the masks change the curvature
    assert_curvature_product_matches(policy, method, features, hessian, tf.constant(mask))


def test_a_masked_step_keeps_the_masked_kl_within_max_kl_and_leaves_one_action_states_alone():
    """The KL the line search checks, recomputed from the logits before and after the step over the allowed actions."""
    space = gym.spaces.Discrete(4)
    policy = small_policy(space, seed=5)
    rng = np.random.default_rng(6)
    features = rng.normal(size=(256, 3)).astype(np.float32)
    mask = random_masks(space, 256, rng, single=64)
    from trpo_tf.update import PolicyUpdate
    update = PolicyUpdate(policy, TRPOConfig(max_kl=0.02), xla=False)  # XLA's compile time adds nothing here
    before = policy.network(features).numpy()
    actions = policy.snapshot().act(features, rng, mask)[1]
    assert mask[np.arange(256), actions].all()
    result = update(features, actions.astype(np.int32), rng.normal(size=256).astype(np.float32), masks=mask)
    kl = kl_by_formula(before, policy.network(features).numpy(), mask)
    assert bool(result["accepted"]) and 1e-4 < kl.mean() <= 0.02 * (1 + 1e-4)
    assert kl.mean() == pytest.approx(float(result["kl"]), rel=1e-3)
    assert np.abs(kl[:64]).max() < 1e-7  # one allowed action: the policy there cannot move
    assert np.isfinite(float(result["entropy"]))
    with pytest.raises(ValueError, match="takes the batch's action masks"):
        update(features, actions.astype(np.int32), np.zeros(256, np.float32))


def test_masks_are_refused_for_a_distribution_that_takes_none():
    with pytest.raises(UnsupportedSpaceError, match="action masks need a Discrete or MultiDiscrete"):
        action_head(gym.spaces.Box(-1.0, 1.0, (2,)), masked=True)
    with pytest.raises(ConfigError, match="action_masks must be one of"):
        TRPOConfig(action_masks="on")
    from trpo_tf import presets
    parsed = presets.parse_yaml("off", "--set action_masks=off")
    assert parsed is False and TRPOConfig(action_masks=parsed).action_masks == "off"  # YAML 1.1 reads off as false
    with pytest.raises(ConfigError, match="action_masks must be one of"):
        TRPOConfig(action_masks=True)


# --------------------------------------------------------------------------- where masks come from

def gate_sampler(*envs, action_masks="auto"):
    return InProcessSampler(SerialVectorEnv([lambda env=env: env for env in envs]), seed=0,
                            rng=np.random.default_rng(0), action_masks=action_masks)


def observation_part(observations):
    return observations["observation"] if isinstance(observations, dict) else observations


@pytest.mark.parametrize("source, multi", [("info", False), ("method", False), ("observation", False), ("both", False),
                                           ("info", True)])
def test_each_source_gives_the_masks_acted_on_and_recorded_and_no_forbidden_action_is_taken(source, multi):
    envs = [masked_envs.make(source, multi=multi) for _ in range(2)]
    sampler = gate_sampler(*envs)
    assert sampler.mask_source == ("info" if source == "both" else source)  # an info mask comes first
    policy = make_policy(sampler.observation_space, sampler.action_space, (8,), "tanh", 0.0, True, seed=0,
                         action_masks=True)
    batch = sampler.collect(policy.snapshot(), 40)
    observations = observation_part(batch.observations).reshape(-1, 3)
    expected = np.array([mask_of(observation, multi) for observation in observations]) == 1
    np.testing.assert_array_equal(batch.action_masks.reshape(len(expected), -1), expected)
    offsets = [0, 3] if multi else [0]
    actions = batch.actions.reshape(len(expected), -1)
    assert all(expected[np.arange(len(expected)), offset + actions[:, k]].all() for k, offset in enumerate(offsets))
    assert sum(env.forbidden_taken for env in envs) == 0 and (batch.rewards >= 0).all()
    if source == "observation":  # the mask's key is the mask, not an input of the networks
        assert set(batch.observations) == {"observation"} and set(sampler.observation_space.spaces) == {"observation"}
    assert sampler.state()["masks"].tolist() == [(mask_of(observation_part(sampler.observations)[n], multi) == 1)
                                                 .tolist() for n in range(2)]


def test_taxi_masks_come_from_its_info_and_agree_with_its_own_action_mask_method():
    with TRPO("Taxi-v4", SMALL, seed=0) as agent:
        assert agent.mask_source == "info" and agent.policy.masked
        batch = agent.sampler.collect(agent.policy.actor(), 100)
        taxi = agent.vector_env.envs[0].unwrapped
        states = batch.observations.reshape(-1)
        expected = np.array([taxi.action_mask(int(state)) for state in states]) == 1
        np.testing.assert_array_equal(batch.action_masks.reshape(-1, 6), expected)
        assert expected[np.arange(len(states)), batch.actions.reshape(-1)].all()


def test_off_ignores_masks_and_an_observation_key_then_is_an_observation():
    sampler = gate_sampler(masked_envs.make("info"), action_masks="off")
    assert sampler.mask_source is None and sampler.collect(_uniform(sampler), 5).action_masks is None
    keyed = gate_sampler(masked_envs.make("observation"), action_masks="off")
    assert set(keyed.observation_space.spaces) == {"observation", "action_mask"}
    assert gate_sampler(masked_envs.make("none")).mask_source is None


def _uniform(sampler):
    space = sampler.action_space

    class Uniform:
        def act(self, observations, rng, masks=None):
            actions = np.array([space.sample() for _ in range(sampler.n_envs)])
            return actions, actions
    return Uniform()


# --------------------------------------------------------------------------- bad masks

BAD_MASKS = {  # name: (mask, multi, what the message says)
    "none allowed": (np.zeros(4, np.int8), False, r"an action mask \[0, 0, 0, 0\] that allows no action"),
    "component": (np.array([1, 1, 1, 0, 0]), True, r"allows no action of component 1 \(of 2\)"),
    "nan": (np.array([1.0, np.nan, 1.0, 1.0]), False, r"a non-finite action mask \[1.0, nan, 1.0, 1.0\]"),
    "not 0/1": (np.array([1, 2, 0, 1]), False, r"holding values other than 0 and 1"),
    "shape changes": (np.ones(5, np.int8), False, r"an action mask of shape \(5,\) from .*; Discrete\(4\) takes "
                                                  r"masks of shape \(4,\)$"),
    "type": (np.array(["1", "0", "1", "1"]), False, r"an action mask of dtype <U1, not numbers or booleans"),
    "missing": (None, False, r"no action mask \(info\['action_mask'\]\)"),
}


@pytest.fixture(scope="module")
def snapshots():
    """Masked policies' NumPy snapshots for GateEnv's Discrete(4) and MultiDiscrete([3, 2]) actions."""
    return {multi: make_policy(OBSERVATIONS, masked_envs.make(multi=multi).action_space, (4,), "tanh", 0.0, True,
                               seed=0, action_masks=True).snapshot() for multi in (False, True)}


@pytest.mark.parametrize("name", list(BAD_MASKS))
@pytest.mark.parametrize("steps", [0, 3], ids=["reset", "step"])
def test_a_bad_mask_is_refused_naming_the_environment_and_the_step(name, steps, snapshots):
    mask, multi, pattern = BAD_MASKS[name]
    good, bad = masked_envs.make("info", multi=multi), masked_envs.make("info", multi=multi, bad=(steps, mask))
    call = "reset" if steps == 0 else "step"
    with pytest.raises(ActionMaskError) as raised:
        sampler = gate_sampler(good, bad)  # the first reset happens here, where the masks' source is chosen
        sampler.collect(snapshots[multi], 6)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("environment 1 (PlainGateEnv) returned "), message
    assert re.search(pattern, message), message
    assert f"from {call}() after {2 * steps} environment steps" in message, message


def test_training_stops_before_learning_from_a_bad_mask():
    agent = TRPO(masked_envs.make("info", bad=(5, np.array([0, 0, 0, 0]))), SMALL.replace(n_envs=1), seed=0)
    weights = [w.numpy().copy() for w in agent.policy.weights]
    with pytest.raises(ActionMaskError, match=r"^environment 0 \(PlainGateEnv\) returned an action mask \[0, 0, 0, 0\] "
                                              r"that allows no action from step\(\) after 5 environment steps$"):
        agent.learn(64)
    assert agent.timesteps == 0 and not agent.history
    assert all(np.array_equal(w, v.numpy()) for w, v in zip(weights, agent.policy.weights))


@pytest.mark.parametrize("source, where", [("info", r"info\['action_mask'\]"), ("method", r"its action_masks\(\) method"),
                                           ("observation", "its observation key 'action_mask'")])
def test_masks_from_an_environment_with_box_actions_are_refused_before_anything_is_learned(source, where):
    agent = TRPO(masked_envs.make(source, actions="box"), SMALL.replace(n_envs=1), seed=0)
    weights = [w.numpy().copy() for w in agent.policy.weights]
    with pytest.raises(ActionMaskError, match=rf"^environment 0 \(\w+\) gave an action mask \({where}\) at reset\(\) "
                                              r"after 0 environment steps, but its action space Box\(.*\) takes none: "
                                              r"action masks need a Discrete or MultiDiscrete action space"):
        agent.learn(64)
    assert agent.timesteps == 0
    assert all(np.array_equal(w, v.numpy()) for w, v in zip(weights, agent.policy.weights))
    with TRPO(masked_envs.make(source, actions="box"), SMALL.replace(n_envs=1, action_masks="off"), seed=0) as ignoring:
        assert ignoring.sampler.collect(ignoring.policy.actor(), 20).rewards.size == 20  # "off": not read, not refused


# --------------------------------------------------------------------------- training: workers, Ray, resume

WORKER_GATE = f"masked_envs:{GATE_ID}"  # workers import masked_envs, which registers it


def assert_batch_masks_are_the_states_masks(batch):
    observations = observation_part(batch.observations).reshape(-1, 3)
    expected = np.array([mask_of(observation) for observation in observations]) == 1
    np.testing.assert_array_equal(batch.action_masks.reshape(len(expected), -1), expected)
    assert expected[np.arange(len(expected)), batch.actions.reshape(-1)].all()


def test_worker_processes_record_the_masks_one_sampler_over_all_environments_records(monkeypatch):
    """Two workers of two environments each, acting deterministically, against one in-process sampler over four."""
    monkeypatch.setenv("PYTHONPATH", os.path.dirname(os.path.abspath(__file__)))  # workers import masked_envs
    reference = InProcessSampler(SerialVectorEnv([lambda: masked_envs.make("info")] * 4), seed=0,
                                 rng=np.random.default_rng(0))
    with TRPO(WORKER_GATE, SMALL.replace(n_envs=4, n_workers=2), seed=0) as agent:
        assert agent.mask_source == "info" and agent.policy.masked
        actor = masked_envs.Deterministic(agent.policy.snapshot())
        for _ in range(2):  # episodes, and their masks, carry over between batches
            want, got = reference.collect(actor, 12), agent.sampler.collect(actor, 12)
            for field in ("observations", "actions", "rewards", "action_masks", "final_index"):
                np.testing.assert_array_equal(getattr(want, field), getattr(got, field), err_msg=field)
            assert_batch_masks_are_the_states_masks(got)
    reference.close()


def test_a_bad_mask_in_a_worker_stops_training_naming_the_environment_and_the_worker(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.path.dirname(os.path.abspath(__file__)))
    config = SMALL.replace(n_envs=4, n_workers=2, env_kwargs={"bad": [5, [0, 0, 0, 0]]})
    with TRPO(WORKER_GATE, config, seed=0) as agent:  # 10 steps: 5 of each of a worker's 2; the worker in a note
        with pytest.raises(ActionMaskError, match=r"^environment [02] \(MaskedGate-v0\) returned an action mask "
                                                  r"\[0, 0, 0, 0\] that allows no action from step\(\) after 10 "
                                                  r"environment steps\n") as raised:
            agent.learn(64)
        assert re.match(r"raised in sampler worker [01] of 2 \(environments [02]–[13]", raised.value.__notes__[0])
        assert agent.timesteps == 0 and not agent.history


def test_a_ray_actor_samples_what_this_process_samples_masks_included(monkeypatch):
    """One Ray actor draws from the sampling stream itself, as the in-process sampler does."""
    import ray
    from trpo_tf.sampling.workers import start_workers
    monkeypatch.setenv("PYTHONPATH", os.path.dirname(os.path.abspath(__file__)))
    snapshot = small_policy(gym.spaces.Discrete(4)).snapshot()
    reference = InProcessSampler(SerialVectorEnv([lambda: masked_envs.make("info")] * 2), seed=3,
                                 rng=np.random.default_rng(np.random.SeedSequence(5)))
    try:
        actor = start_workers(WORKER_GATE, None, n_envs=2, n_workers=1, backend="ray", seed=3,
                              stream=np.random.SeedSequence(5))
        try:
            want, got = reference.collect(snapshot, 20), actor.collect(snapshot, 20)
        finally:
            actor.close()
    finally:
        ray.shutdown()
        reference.close()
    for field in ("observations", "actions", "rewards", "action_masks"):
        np.testing.assert_array_equal(getattr(want, field), getattr(got, field), err_msg=field)
    assert_batch_masks_are_the_states_masks(got)


def test_resuming_a_masked_run_continues_with_the_current_masks(tmp_path):
    """A run saved and loaded with resume samples what the original goes on to sample: the checkpoint's
    sampler state carries the masks of the current observations (and the environments' state)."""
    first = TRPO(GATE_ID, SMALL, seed=4)
    first.sampler.collect(first.policy.actor(), 29)  # mid-episode (training would only add compile time here)
    state = first.sampler.state()
    assert state["masks"].tolist() == [(mask_of(observation) == 1).tolist() for observation in state["observations"]]
    first.save(str(tmp_path / "run"))
    with TRPO.load(str(tmp_path / "run"), resume=True) as resumed:
        assert resumed.policy.masked
        np.testing.assert_array_equal(resumed.sampler.masks, state["masks"])
        actor = masked_envs.Deterministic(first.policy.snapshot())
        want, got = first.sampler.collect(actor, 20), resumed.sampler.collect(actor, 20)
        for field in ("observations", "actions", "rewards", "action_masks"):
            np.testing.assert_array_equal(getattr(want, field), getattr(got, field), err_msg=field)
        with pytest.raises(ValueError, match=r"action masks of shape None; these environments' masks have shape "
                                             r"\(2, 4\)"):
            resumed.sampler.load_state(dict(resumed.sampler.state(), masks=None))
    first.close()


# --------------------------------------------------------------------------- predict, evaluation, callbacks

@pytest.fixture(scope="module")
def agent():
    """An untrained masked agent on GateEnv (training does not change the graphs) whose network prefers the
    actions the masks most often forbid: action 3 is always allowed and always the least probable."""
    made = TRPO(GATE_ID, SMALL.replace(n_envs=1), seed=0)
    made.policy.network.layers[-1].bias.assign(np.array([2.0, 1.5, 1.0, -4.0], np.float32))
    yield made
    made.close()


def own_episode_returns(agent, episodes, seed, source="info"):
    """Deterministic returns written out: each state's mask from mask_of, the action from predict with it."""
    env = masked_envs.make(source)
    returns = []
    for episode in range(episodes):
        observation, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            state = observation_part(observation)
            action = agent.predict({"observation": state} if source == "observation" else state,
                                   action_masks=mask_of(state))[0]
            observation, reward, terminated, truncated, _ = env.step(action)
            total, done = total + reward, terminated or truncated
        returns.append(total)
    assert env.forbidden_taken == 0
    return returns


def test_predict_takes_optional_masks_and_answers_the_best_allowed_action(agent):
    rng = np.random.default_rng(7)
    observations = rng.uniform(-1, 1, (64, 3)).astype(np.float32)
    masks = random_masks(gym.spaces.Discrete(4), 64, rng, single=16)
    logits = agent.policy.network(agent.policy.normalizer(observations)).numpy()
    expected = np.argmax(np.where(masks, logits, -np.inf), axis=1)
    np.testing.assert_array_equal(agent.predict(observations, action_masks=masks), expected)
    np.testing.assert_array_equal(agent.predict(observations), np.argmax(logits, axis=1))  # no masks: all allowed
    only_three = np.array([0, 0, 0, 1])
    assert agent.predict(observations[0], action_masks=only_three).tolist() == [3]  # the least probable action
    sampled = agent.predict(np.repeat(observations[:4], 50, 0), deterministic=False,
                            action_masks=np.repeat(masks[:4], 50, 0))
    assert np.repeat(masks[:4], 50, 0)[np.arange(200), sampled].all()
    with pytest.raises(InputError, match=r"row 1 of the action masks is an action mask \[0, 0, 0, 0\] that allows no "):
        agent.predict(observations[:2], action_masks=np.array([[1, 0, 0, 0], [0, 0, 0, 0]]))
    with pytest.raises(InputError, match=r"action masks int64\[2, 3\] do not fit \[2, 4\]"):
        agent.predict(observations[:2], action_masks=np.ones((2, 3), np.int64))


def test_evaluate_and_the_eval_callback_act_on_the_environments_masks(agent):
    from trpo_tf.callbacks import EvalCallback
    expected = own_episode_returns(agent, 3, 100)
    assert agent.evaluate(episodes=3, seed=100)["returns"] == expected
    callback = EvalCallback(agent, GATE_ID, every=1, episodes=3, seed=100)
    try:
        callback({"iteration": 1, "timesteps": 0})
    finally:
        callback.close()
    assert callback.evaluations[0]["returns"] == expected


def test_an_observation_key_mask_is_read_in_training_evaluation_and_the_eval_callback():
    from trpo_tf.callbacks import EvalCallback
    with TRPO(masked_envs.make("observation"), SMALL.replace(n_envs=1), seed=0) as keyed:
        assert keyed.mask_source == "observation" and set(keyed.observation_space.spaces) == {"observation"}
        expected = own_episode_returns(keyed, 2, 5, source="observation")
        assert keyed.evaluate(episodes=2, seed=5, env=masked_envs.make("observation"))["returns"] == expected
        callback = EvalCallback(keyed, masked_envs.make("observation"), every=1, episodes=2, seed=5)
        callback({"iteration": 1, "timesteps": 0})
        assert callback.evaluations[0]["returns"] == expected


# --------------------------------------------------------------------------- exports

@pytest.fixture(scope="module")
def exported(agent, tmp_path_factory):
    return agent.export(str(tmp_path_factory.mktemp("masked") / "export"), episodes=3, seed=100)


def probe(rows=64, seed=8):
    """Observations [rows, 3] and masks [rows, 4]: random ones, a quarter allowing one action."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (rows, 3)).astype(np.float32), random_masks(gym.spaces.Discrete(4), rows, rng, rows // 4)


def test_the_saved_model_takes_named_masks_and_answers_only_allowed_actions(agent, exported):
    from trpo_tf.export import read_metadata
    loaded = tf.saved_model.load(exported)
    for name in ("serving_default", "sample", "distribution"):
        assert sorted(loaded.signatures[name].structured_input_signature[1]) == ["action_mask", "observation"]
    assert list(loaded.signatures["value"].structured_input_signature[1]) == ["observation"]
    observations, masks = probe()
    unmasked = loaded.signatures["distribution"](observation=observations, action_mask=np.ones_like(masks))["logits"]
    logits = loaded.signatures["distribution"](observation=observations, action_mask=masks)["logits"].numpy()
    np.testing.assert_array_equal(logits, np.where(masks, unmasked.numpy(), -1e9))
    expected = np.argmax(np.where(masks, unmasked.numpy(), -np.inf), axis=1)
    assert (expected != np.argmax(unmasked.numpy(), axis=1)).mean() > 0.3  # the masks change most answers
    served = loaded.signatures["serving_default"](observation=observations, action_mask=masks)["action"].numpy()
    np.testing.assert_array_equal(served, expected)
    sampled = loaded.signatures["sample"](observation=np.repeat(observations, 20, 0),
                                          action_mask=np.repeat(masks, 20, 0))["action"].numpy()
    assert np.repeat(masks, 20, 0)[np.arange(len(sampled)), sampled].all()

    metadata = read_metadata(exported)
    assert metadata["action_masks"]["source"] == "info" and metadata["action_masks"]["shape"] == [None, 4]
    assert metadata["signatures"]["serving_default"]["inputs"]["action_mask"] == {"dtype": "bool", "shape": [None, 4]}
    assert metadata["evaluation"]["returns"] == own_episode_returns(agent, 3, 100)  # through its own graph, masked

    serve = loaded.signatures["serving_default"]
    with pytest.raises(TypeError, match=r"Can not cast TensorSpec\(shape=\(64, 3\), dtype=tf.bool, name='action_mask'\)"):
        serve(observation=observations, action_mask=np.ones((64, 3), bool))  # the signature binds [None, 4] only
    for mask, message in ((np.ones((63, 4), bool), "one row per observation"),
                          (np.where(np.arange(64)[:, None] == 5, False, masks), "allows no action")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            serve(observation=observations, action_mask=mask)


def test_rest_requests_carry_the_masks(exported):
    from trpo_tf.export import rest_predict
    observations, masks = probe(4)
    loaded = tf.saved_model.load(exported)
    expected = loaded.signatures["serving_default"](observation=observations, action_mask=masks)["action"].numpy()
    rows = {"instances": [{"observation": o.tolist(), "action_mask": m.tolist()} for o, m in zip(observations, masks)]}
    assert json.loads(rest_predict(exported, json.dumps(rows))) == {"predictions": expected.tolist()}
    columns = {"inputs": {"observation": observations.tolist(), "action_mask": masks.astype(int).tolist()}}
    assert json.loads(rest_predict(exported, json.dumps(columns))) == {"outputs": expected.tolist()}
    nothing = {"instances": [{"observation": [0.0, 0.0, 0.0], "action_mask": [False] * 4}]}
    assert "allows no action" in json.loads(rest_predict(exported, json.dumps(nothing)))["error"]


def test_tflite_and_onnx_take_the_masks_and_answer_what_the_saved_model_answers(exported, tmp_path):
    import onnxruntime
    from trpo_tf import export
    observations, masks = probe()
    loaded = tf.saved_model.load(exported)
    want = {name: loaded.signatures[name](observation=observations, action_mask=masks)
            for name in ("serving_default", "distribution")}
    tflite = export.to_tflite(exported, str(tmp_path / "policy.tflite"))
    files = export.to_onnx(exported, str(tmp_path / "onnx"))
    for name, output in (("serving_default", "action"), ("distribution", "logits")):
        lite = export.litert_runner(tflite, name)(observations, action_mask=masks.astype(np.int8))[output]
        session = onnxruntime.InferenceSession(files[name])
        assert sorted(i.name for i in session.get_inputs()) == ["action_mask", "observation"]
        onnx_output = session.run([output], {"observation": observations, "action_mask": masks})[0]
        for got in (lite, onnx_output):
            np.testing.assert_allclose(got, want[name][output].numpy(), rtol=1e-5, atol=1e-5)
    tiled = np.repeat(masks, 20, 0)
    for sampled in (export.litert_runner(tflite, "sample")(np.repeat(observations, 20, 0), action_mask=tiled)["action"],
                    onnxruntime.InferenceSession(files["sample"]).run(
                        ["action"], {"observation": np.repeat(observations, 20, 0), "action_mask": tiled})[0]):
        assert tiled[np.arange(len(tiled)), sampled].all()
    with pytest.raises(ValueError, match="allows no action in row 1"):
        export.litert_runner(tflite)(observations[:2], action_mask=np.array([[1, 0, 0, 0], [0, 0, 0, 0]], bool))


def test_trpo_tf_evaluate_reads_the_masks_for_an_export_and_for_a_run(agent, exported, tmp_path, capsys):
    from trpo_tf import cli
    expected = own_episode_returns(agent, 3, 100)
    run = str(tmp_path / "run")
    agent.save(run)
    for path in (exported, run):
        assert cli.main(["evaluate", path, "--episodes", "3", "--seed", "100", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["mean_return"] == pytest.approx(np.mean(expected))


LOAD_SCRIPT = """
import sys
for name in ("trpo_tf", "tensorflow_probability", "keras"):
    sys.modules[name] = None  # TensorFlow alone: importing any of these fails
import numpy as np
import tensorflow as tf
for k, path in enumerate(sys.argv[1:]):
    inputs = np.load(f"inputs{k}.npz")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    np.save(f"actions{k}.npy", serve(observation=inputs["observations"], action_mask=inputs["masks"])["action"].numpy())
"""


@pytest.fixture(scope="module")
def multi_exported(tmp_path_factory):
    """A masked MultiDiscrete([3, 2]) agent whose network prefers the choices the masks most often forbid, exported."""
    with TRPO(masked_envs.make("info", multi=True), SMALL.replace(n_envs=1), seed=0) as made:
        made.policy.network.layers[-1].bias.assign(np.array([2.0, 1.5, -3.0, 0.5, -0.5, 0.0], np.float32))
        yield made, made.export(str(tmp_path_factory.mktemp("multi") / "export"), episodes=1, seed=100)


def masked_argmax_by_hand(logits, masks, sizes, width):
    """The most probable allowed choice of each component [B, C], from the network's logits [B, C·W] and the
    concatenated masks [B, Σ sizes]."""
    offsets = np.cumsum([0] + sizes[:-1])
    return np.stack([np.argmax(np.where(masks[:, m:m + n] != 0, logits[:, k * width:k * width + n], -np.inf), axis=1)
                     for k, (n, m) in enumerate(zip(sizes, offsets))], axis=1)


def test_a_process_with_tensorflow_alone_serves_only_allowed_actions_discrete_and_multidiscrete(
        agent, exported, multi_exported, tmp_path):
    """The deterministic action of each export, run in another process, against a masked argmax written here
    over the logits of the policy's own network."""
    from trpo_tf.export import read_metadata
    multi_agent, multi_path = multi_exported
    metadata = read_metadata(multi_path)["action_masks"]
    assert metadata["shape"] == [None, 5] and metadata["components"] == [3, 2]
    expected = []
    for k, (owner, sizes, width) in enumerate(((agent, [4], 4), (multi_agent, [3, 2], 3))):
        observations, masks = probe(seed=9 + k)
        if k == 1:
            masks = random_masks(gym.spaces.MultiDiscrete([3, 2]), 64, np.random.default_rng(10), single=16)
        np.savez(tmp_path / f"inputs{k}.npz", observations=observations, masks=masks)
        logits = owner.policy.network(owner.policy.normalizer(observations)).numpy()
        chosen = masked_argmax_by_hand(logits, masks, sizes, width)
        unmasked = masked_argmax_by_hand(logits, np.ones_like(masks), sizes, width)
        assert (chosen != unmasked).any(axis=1).mean() > 0.3  # the masks change most answers
        expected.append(chosen[:, 0] if k == 0 else chosen)
    result = subprocess.run([sys.executable, "-I", "-c", LOAD_SCRIPT, exported, multi_path], capture_output=True,
                            text=True, timeout=300, cwd=str(tmp_path), env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr[-2000:]
    for k, want in enumerate(expected):
        np.testing.assert_array_equal(np.load(tmp_path / f"actions{k}.npy"), want)
