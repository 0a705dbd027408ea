"""Time the three Hessian-vector products of the mean KL on a HalfCheetah-sized policy, or through the Nature CNN.

    python benchmarks/hvp.py [--env HalfCheetah-v5] [--repeats 50]
    python benchmarks/hvp.py --nature-cnn [--repeats 3] [--methods forward_over_backward ...]
    python benchmarks/hvp.py --minatar [--repeats 3] [--methods gauss_newton ...]

Prints, for 2048 and 16384 samples, the median milliseconds of one H·v by each
``TRPOConfig.hvp_method``, of one full policy step (CG + line search) with it called back to
back, and of the same step called after 0.1 s of single-threaded NumPy work (as it is after a
rollout, when the second core has been idle), and the largest relative difference of each H·v
from forward-over-backward.

``--nature-cnn``: the policy reads 2048 uint8 frames of 4×84×84 (ALE after AtariPreprocessing
and FrameStackObservation(4)) through the Nature CNN and picks one of 4 actions; each method is
timed with ``fisher_fraction`` 1 and 0.2, without the cold-start column. ``--minatar``: the same
with 2048 10×10×4 bool grids (MinAtar Breakout) through the small CNN and 3 actions, the setting of
``benchmarks/atari.py --task minatar`` (no hidden layers after the CNN, 10 CG iterations).

``--xla-by-distribution``: the policy step of the Gaussian and the Beta head, each compiled with and
without XLA, on ``--samples`` random inputs of ``--env`` (Humanoid-v5's preset: 1,024 samples, no
contact forces): the first call (trace and compile), the median step, the KL the step reports, the
KL recomputed eagerly between the distributions before and after the step, and the norm of the
parameter step it took.

    python benchmarks/hvp.py --xla-by-distribution --env Humanoid-v5 --samples 1024 --repeats 5
"""

import argparse
import time

import numpy as np
import tensorflow as tf

import gymnasium as gym

from trpo_tf import TRPOConfig
from trpo_tf.config import HVP_METHODS
from trpo_tf.policies import kl_divergence, make_policy
from trpo_tf.update import PolicyUpdate


def busy_one_core(seconds: float) -> None:
    """Keep this thread busy with small NumPy work, as a rollout does, for ``seconds``."""
    end, x = time.perf_counter() + seconds, np.ones((1, 17))
    while time.perf_counter() < end:
        np.tanh(x @ np.ones((17, 64)))


def median_ms(function, repeats: int, idle_before: float = 0.0) -> float:
    function()  # trace and warm up
    times = []
    for _ in range(repeats):
        busy_one_core(idle_before)
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def cnn_step(repeats: int, methods: list[str], minatar: bool, samples: int = 2048) -> None:
    """The policy step on ``samples`` random frames through a CNN: ALE-style through the Nature CNN, or
    MinAtar's grids through the small one (see the module docstring)."""
    if minatar:
        observation_space, n_actions, high = gym.spaces.Box(0, 1, (10, 10, 4), np.bool_), 3, 2
        hidden = {"policy_hidden": (), "cg_iters": 10}  # benchmarks/atari.py's settings
    else:
        observation_space, n_actions, high, hidden = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), 4, 256, {}
    rng = np.random.default_rng(samples)
    frames = tf.constant(rng.integers(0, high, (samples,) + observation_space.shape, dtype=np.uint8))  # grids as 0/1
    inputs = (tf.zeros([samples, 0]), {"observation": frames})
    actions = rng.integers(0, n_actions, samples)
    advantages = tf.constant(rng.normal(size=samples).astype(np.float32))
    print(f"{'samples':>8} {'method':>22} {'fisher':>7} {'H·v ms':>8} {'step ms':>9} {'max rel diff':>13}")
    references: dict[float, np.ndarray] = {}
    for method in methods:
        for fraction in (1.0, 0.2):
            config = TRPOConfig(hvp_method=method, fisher_fraction=fraction, **hidden)
            policy = make_policy(observation_space, gym.spaces.Discrete(n_actions), config.policy_hidden, config.activation,
                                 config.init_log_std, config.normalize_observations, seed=1)
            update = PolicyUpdate(policy, config)
            size = int(sum(np.prod(v.shape) for v in policy.trainable_parameters()))
            vector = tf.constant(np.random.default_rng(1).normal(size=size).astype(np.float32))
            subset = tf.nest.map_structure(lambda x: x[::update.fisher_stride], inputs)  # what the step uses
            product = tf.function(lambda v: update.curvature_product(subset)(v))
            value = product(vector).numpy()
            reference = references.setdefault(fraction, value)
            difference = np.max(np.abs(value - reference)) / np.max(np.abs(reference))
            hvp_ms = median_ms(lambda: product(vector).numpy(), repeats)
            snapshot = [v.numpy() for v in policy.trainable_parameters()]

            def step():
                update(inputs, actions, advantages)
                for variable, saved in zip(policy.trainable_parameters(), snapshot):
                    variable.assign(saved)

            step_ms = median_ms(step, repeats)
            print(f"{samples:>8} {method:>22} {fraction:>7} {hvp_ms:>8.1f} {step_ms:>9.1f} {difference:>13.2e}",
                  flush=True)


def xla_by_distribution(env_id: str, samples: int, repeats: int) -> None:
    """See the module docstring. Training compiles both heads with XLA (the Beta for the batch's own
    size, see ActionHead.xla_dynamic_batch); ``PolicyUpdate(xla=False)`` is the step without it."""
    env = gym.make(env_id, **(TRPOConfig.preset(env_id).env_kwargs if TRPOConfig.preset(env_id) else {}))
    space = env.action_space
    assert isinstance(space, gym.spaces.Box), f"{env_id}: a Box action space is needed, not {space}"
    print(f"{'distribution':>12} {'XLA':>4} {'first s':>8} {'step ms':>8} {'reported KL':>12} {'recomputed KL':>14} "
          f"{'step norm':>10}")
    for distribution in ("gaussian", "beta"):
        for xla in (True, False):
            config = TRPOConfig(action_distribution=distribution, steps_per_iteration=samples)
            policy = make_policy(env.observation_space, space, config.policy_hidden, config.activation,
                                 -0.5, True, seed=1, action_distribution=distribution)
            update = PolicyUpdate(policy, config, xla=xla)
            rng = np.random.default_rng(0)
            features = tf.constant(rng.normal(size=(samples, policy.encoder.dim)).astype(np.float32))
            low, high = space.low, space.high
            actions = rng.uniform(low + 0.01 * (high - low), high - 0.01 * (high - low),
                                  size=(samples,) + space.shape).astype(np.float32)
            advantages = tf.constant(rng.normal(size=samples).astype(np.float32))
            snapshot = [v.numpy() for v in policy.trainable_parameters()]
            before = policy.frozen_distribution(features)

            def step() -> tuple[float, float, float]:
                result = update(features, actions, advantages)
                recomputed = float(tf.reduce_mean(kl_divergence(before, policy.distribution(features))))
                moved = np.sqrt(sum(float(np.sum((v.numpy() - s) ** 2))
                                    for v, s in zip(policy.trainable_parameters(), snapshot)))
                for variable, saved in zip(policy.trainable_parameters(), snapshot):
                    variable.assign(saved)
                return float(result["kl"]), recomputed, moved

            start = time.perf_counter()
            kl, recomputed, moved = step()
            first = time.perf_counter() - start
            step_ms = median_ms(step, repeats)
            print(f"{distribution:>12} {'yes' if xla else 'no':>4} {first:>8.1f} {step_ms:>8.0f} {kl:>12.6f} "
                  f"{recomputed:>14.6f} {moved:>10.5f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per figure (default 50; 3 with --nature-cnn or --minatar)")
    parser.add_argument("--nature-cnn", action="store_true", help="the Nature CNN on 2048 frames of 4×84×84 instead")
    parser.add_argument("--minatar", action="store_true", help="the small CNN on 2048 MinAtar grids of 10×10×4 instead")
    parser.add_argument("--methods", nargs="+", choices=HVP_METHODS, default=list(HVP_METHODS),
                        help="with --nature-cnn or --minatar: the hvp_methods to time (default: all)")
    parser.add_argument("--xla-by-distribution", action="store_true",
                        help="the Gaussian and Beta policy steps with and without XLA instead")
    parser.add_argument("--samples", type=int, default=1024, help="with --xla-by-distribution: the batch")
    args = parser.parse_args()
    if args.xla_by_distribution:
        xla_by_distribution(args.env, args.samples, args.repeats or 5)
        return
    if args.nature_cnn or args.minatar:
        cnn_step(args.repeats or 3, args.methods, minatar=args.minatar)
        return
    args.repeats = args.repeats or 50
    env = gym.make(args.env)
    print(f"{'samples':>8} {'method':>22} {'H·v ms':>8} {'step ms':>8} {'after 0.1 s':>12} {'max rel diff':>13}")
    for samples in (2048, 16384):
        reference = None
        for method in HVP_METHODS:
            config = TRPOConfig(hvp_method=method, cg_iters=15)
            policy = make_policy(env.observation_space, env.action_space, config.policy_hidden, config.activation,
                                 config.init_log_std, config.normalize_observations, seed=1)
            update = PolicyUpdate(policy, config)
            rng = np.random.default_rng(samples)  # the same batch for every method
            features = tf.constant(rng.normal(size=(samples, policy.encoder.dim)).astype(np.float32))
            actions = rng.normal(size=(samples,) + policy.head.action_shape).astype(np.float32)
            advantages = tf.constant(rng.normal(size=samples).astype(np.float32))
            size = int(sum(np.prod(v.shape) for v in policy.trainable_parameters()))
            vector = tf.constant(np.random.default_rng(1).normal(size=size).astype(np.float32))
            product = tf.function(lambda v: update.curvature_product(features)(v))
            value = product(vector).numpy()
            reference = value if reference is None else reference
            difference = np.max(np.abs(value - reference)) / np.max(np.abs(reference))
            hvp_ms = median_ms(lambda: product(vector).numpy(), args.repeats)
            snapshot = [v.numpy() for v in policy.trainable_parameters()]

            def step():
                update(features, actions, advantages)
                for variable, saved in zip(policy.trainable_parameters(), snapshot):
                    variable.assign(saved)

            step_ms = median_ms(step, max(5, args.repeats // 5))
            cold_ms = median_ms(step, max(5, args.repeats // 5), idle_before=0.1)
            print(f"{samples:>8} {method:>22} {hvp_ms:>8.2f} {step_ms:>8.1f} {cold_ms:>12.1f} {difference:>13.2e}",
                  flush=True)


if __name__ == "__main__":
    main()
