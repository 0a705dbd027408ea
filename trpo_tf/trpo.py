"""The TRPO agent: collect a batch, estimate advantages, take the trust-region step, fit V.

One iteration of :meth:`TRPO.learn` reads like the algorithm (Schulman et al., 2015):

    batch = sampler.collect(policy)                        # rollout.py
    advantages, returns = compute_gae(batch, V)            # advantages.py
    g = ∇ surrogate;  x ≈ H⁻¹g by CG;  step = √(2δ/xᵀHx)·x  # trust_region.py, in _policy_step
    θ = backtracking_line_search(θ, step)                  # trust_region.py, in _policy_step
    fit V on the λ-returns                                 # _fit_value

The policy step and the value fit are each one compiled ``tf.function`` with fixed input
signatures; acting during rollouts uses a NumPy copy of the policy, refreshed once per
iteration, so no TensorFlow call is made per environment step.
"""

from __future__ import annotations

import collections
import concurrent.futures
import math
import time
from typing import Any, Callable

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from trpo_tf import advantages as gae
from trpo_tf import trust_region
from trpo_tf.config import TRPOConfig
from trpo_tf.normalization import ObservationNormalizer, RewardScaler
from trpo_tf.policies import NumpyMLP, ObservationEncoder, Policy, action_head, kl_divergence, value_model
from trpo_tf.rollout import EnvLike, Sampler, make_env, make_vector_env

RETURN_WINDOW = 100  # episodes averaged into ``episode_return_mean``


class TRPO:
    """Trust Region Policy Optimization on a gymnasium environment.

    Args:
        env: an environment id (``"CartPole-v1"``), a gymnasium ``Env`` or a ``VectorEnv``
            created with ``autoreset_mode=AutoresetMode.SAME_STEP``.
        config: hyperparameters (:class:`TRPOConfig`).
        seed: seeds the environments, the weight initialization and action sampling; the
            same seed on the same machine gives the same history. None draws one.

    Attributes:
        history: one dict per iteration (see :meth:`learn`).
        timesteps: environment steps taken so far, over all environments.
    """

    def __init__(self, env: EnvLike, config: TRPOConfig | None = None, seed: int | None = None):
        self.config = config if config is not None else TRPOConfig()
        if not isinstance(self.config, TRPOConfig):
            raise TypeError(f"config must be a TRPOConfig, got {type(self.config).__name__}")
        self.seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None else int(seed)
        self.env_id = env if isinstance(env, str) else getattr(getattr(env, "spec", None), "id", None)
        self.vector_env = make_vector_env(env, self.config.n_envs, self.config.env_kwargs)
        if self.vector_env.num_envs != self.config.n_envs:
            raise ValueError(f"the VectorEnv has {self.vector_env.num_envs} environments but "
                             f"config.n_envs is {self.config.n_envs}")
        self.observation_space = self.vector_env.single_observation_space
        self.action_space = self.vector_env.single_action_space
        self.encoder = ObservationEncoder(self.observation_space)
        self.head = action_head(self.action_space)

        cfg = self.config
        self.normalizer = ObservationNormalizer(self.encoder.dim, enabled=cfg.normalize_observations)
        self.reward_scaler = RewardScaler(cfg.n_envs, cfg.gamma)
        self.policy = Policy(self.head, self.encoder.dim, cfg.policy_hidden, cfg.activation,
                             cfg.init_log_std, seed=self.seed * 7 + 1)
        self.value = value_model(self.encoder.dim, cfg.value_hidden, cfg.activation, seed=self.seed * 7 + 4)
        self.value_optimizer = keras.optimizers.Adam(cfg.value_lr)
        self.value_optimizer.build(self.value.trainable_variables)
        self.rng = np.random.default_rng(self.seed)
        self.sampler = Sampler(self.vector_env, seed=self.seed)
        self.timesteps = 0
        self.history: list[dict[str, float]] = []
        self.recent_returns: collections.deque[float] = collections.deque(maxlen=RETURN_WINDOW)
        self._fisher_stride = max(1, round(1.0 / cfg.fisher_fraction))
        self._background = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="value-fit")
        self._compile()

    # ------------------------------------------------------------------ the algorithm

    def learn(self, total_timesteps: int, callback: Callable[[dict[str, float]], Any] | None = None) -> "TRPO":
        """Train until ``timesteps`` reaches ``total_timesteps`` (whole iterations).

        Each iteration appends to :attr:`history` a dict with ``iteration``, ``timesteps``,
        ``episode_return_mean`` (last 100 finished episodes), ``episodes``, ``kl`` (mean
        KL(old ‖ new) after the accepted step), ``surrogate_gain``, ``line_search_steps``,
        ``step_accepted``, ``entropy``, ``value_loss``, ``explained_variance``, ``fps``, and
        the seconds spent in ``sampling_seconds``, ``advantage_seconds``,
        ``policy_step_seconds`` and ``value_fit_seconds``. ``callback(entry)`` is called after
        each iteration; returning False stops training.
        """
        if not isinstance(total_timesteps, int) or total_timesteps < 0:
            raise ValueError(f"total_timesteps must be a non-negative integer, got {total_timesteps!r}")
        while self.timesteps < total_timesteps:
            entry = self.iterate()
            if callback is not None and callback(entry) is False:
                break
        return self

    def iterate(self) -> dict[str, float]:
        """One TRPO iteration: rollout, GAE, trust-region step, value fit. Returns its history entry."""
        cfg = self.config
        start = time.perf_counter()
        batch = self.sampler.collect(self._numpy_actor(), cfg.steps_per_env)
        self.timesteps += batch.size
        self.recent_returns.extend(batch.episode_returns)
        sampled = time.perf_counter()

        encoded = self.encoder.numpy(_flatten_time(batch.observations))
        self.normalizer.update(encoded)
        features = self.normalizer.numpy_normalize()(encoded)
        values, next_values = self._values_and_next_values(batch, features)
        rewards = (self.reward_scaler.scale(batch.rewards, batch.terminated | batch.truncated)
                   if cfg.normalize_rewards else batch.rewards)
        advantages, returns = gae.compute_gae(rewards, values, next_values, batch.terminated,
                                              batch.truncated, cfg.gamma, cfg.gae_lambda)
        advantages = advantages.reshape(-1)
        if cfg.normalize_advantages:
            advantages = gae.normalize(advantages)
        estimated = time.perf_counter()

        # The policy step and the value fit read the same batch and write disjoint variables:
        # they run side by side (TensorFlow releases the GIL), with the same result as in turn.
        value_fit = self._background.submit(_timed, self._fit_value, features, returns.reshape(-1),
                                            self._minibatch_order(len(features)))
        step, policy_seconds = _timed(self._policy_step, features, _flatten_time(batch.actions).astype(
            self.head.action_dtype.as_numpy_dtype), advantages.astype(np.float32))
        value_loss, value_seconds = value_fit.result()
        done = time.perf_counter()

        entry = {
            "iteration": len(self.history) + 1,
            "timesteps": self.timesteps,
            "episode_return_mean": float(np.mean(self.recent_returns)) if self.recent_returns else math.nan,
            "episodes": len(batch.episode_returns),
            "kl": float(step["kl"]),
            "surrogate_gain": float(step["surrogate_gain"]),
            "line_search_steps": int(step["line_search_steps"]),
            "step_accepted": bool(step["accepted"]),
            "entropy": float(step["entropy"]),
            "value_loss": float(value_loss),
            "explained_variance": explained_variance(values.reshape(-1), returns.reshape(-1)),
            "fps": batch.size / (done - start),
            "sampling_seconds": sampled - start,
            "advantage_seconds": estimated - sampled,
            "policy_step_seconds": policy_seconds,
            "value_fit_seconds": value_seconds,
        }
        self.history.append(entry)
        return entry

    def _compile(self) -> None:
        """Build the compiled policy step, value fit and forward passes with fixed signatures."""
        features = tf.TensorSpec([None, self.encoder.dim], tf.float32)
        actions = tf.TensorSpec((None,) + self.head.action_shape, self.head.action_dtype)
        vector = tf.TensorSpec([None], tf.float32)
        # XLA fuses the many small ops of CG, the line search and the Adam steps: on 2 cores it
        # halves the policy step and cuts the value fit by two thirds (benchmarks/hvp.py). It
        # compiles once per batch shape, and the batch shape is fixed by the config.
        self._policy_step = tf.function(self._policy_step_graph, input_signature=[features, actions, vector],
                                        jit_compile=True)
        self._fit_value = tf.function(self._fit_value_graph, input_signature=[
            features, vector, tf.TensorSpec([None, None], tf.int32)], jit_compile=True)
        self._value_of = tf.function(lambda f: self.value(f)[:, 0], input_signature=[features])
        observations = tf.TensorSpec((None,) + self.encoder.shape, tf.float32)
        self._deterministic_action = tf.function(self.deterministic_action_graph, input_signature=[observations])

    def _policy_step_graph(self, features: tf.Tensor, actions: tf.Tensor, advantages: tf.Tensor
                           ) -> dict[str, tf.Tensor]:
        """The whole trust-region update of the policy, as one graph.

        features [B, D], actions [B, *A], advantages [B]. The old distribution is evaluated
        once and held constant, so KL(old ‖ new) and its Hessian are taken in θ_new only.
        """
        cfg = self.config
        variables = self._policy_variables()
        old = self._frozen_distribution(features)
        old_log_prob = tf.stop_gradient(old.log_prob(actions))

        def surrogate_kl_entropy() -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            """Surrogate advantage, mean KL(old ‖ new) and mean entropy, from one forward pass."""
            new = self.policy.distribution(features)
            entropy = tf.reduce_mean(new.entropy())
            ratio = tf.exp(new.log_prob(actions) - old_log_prob)
            surrogate = tf.reduce_mean(ratio * advantages) + cfg.entropy_coef * entropy
            return surrogate, tf.reduce_mean(kl_divergence(old, new)), entropy

        curvature = self.curvature_product(features[::self._fisher_stride])

        def damped_curvature(vector: tf.Tensor) -> tf.Tensor:
            return curvature(vector) + cfg.cg_damping * vector

        old_params = trust_region.get_flat(variables)
        old_surrogate = surrogate_kl_entropy()[0]
        gradient = trust_region.flat_gradient(lambda: surrogate_kl_entropy()[0], variables)
        direction = trust_region.conjugate_gradient(damped_curvature, gradient, cfg.cg_iters)
        full_step = trust_region.scaled_step(damped_curvature, direction, cfg.max_kl)
        accepted, steps = trust_region.backtracking_line_search(
            variables, old_params, full_step, lambda: surrogate_kl_entropy()[:2], old_surrogate,
            cfg.max_kl, cfg.line_search_coef, cfg.line_search_max_steps)
        surrogate, kl, entropy = surrogate_kl_entropy()
        return {
            "kl": kl,
            "surrogate_gain": surrogate - old_surrogate,
            "line_search_steps": steps,
            "accepted": accepted,
            "entropy": entropy,
        }

    def curvature_product(self, features: tf.Tensor) -> Callable[[tf.Tensor], tf.Tensor]:
        """v [P] ↦ H·v [P], H the Hessian of the mean KL(old ‖ new) over ``features`` [B, D] at the
        current parameters, computed by ``config.hvp_method`` (all three agree there)."""
        variables = self._policy_variables()
        old = self._frozen_distribution(features)
        if self.config.hvp_method == "gauss_newton":
            def outputs() -> list[tf.Tensor]:
                log_std = [] if self.policy.log_std is None else [tf.identity(self.policy.log_std.value)]
                return [self.policy(features)] + log_std

            def kl_of_outputs(parameters: list[tf.Tensor]) -> tf.Tensor:
                log_std = parameters[1] if len(parameters) > 1 else None
                return tf.reduce_mean(kl_divergence(old, self.head.distribution(parameters[0], log_std)))

            return lambda vector: trust_region.gauss_newton_vector_product(outputs, kl_of_outputs, variables, vector)

        def mean_kl() -> tf.Tensor:
            return tf.reduce_mean(kl_divergence(old, self.policy.distribution(features)))

        product = {"forward_over_backward": trust_region.hessian_vector_product,
                   "double_backward": trust_region.double_backward_hessian_vector_product}[self.config.hvp_method]
        return lambda vector: product(mean_kl, variables, vector)

    def _frozen_distribution(self, features: tf.Tensor):
        """The current policy's distribution at ``features`` [B, D], as constants (π_old)."""
        log_std = None if self.policy.log_std is None else tf.stop_gradient(tf.identity(self.policy.log_std))
        return self.head.distribution(tf.stop_gradient(self.policy(features)), log_std)

    def _policy_variables(self) -> list[tf.Variable]:
        """The policy's trainable tf.Variables (Keras 3 wraps them; autodiff wants the real ones)."""
        return [v.value for v in self.policy.trainable_variables]

    def _fit_value_graph(self, features: tf.Tensor, returns: tf.Tensor, order: tf.Tensor) -> tf.Tensor:
        """Adam on the squared error to the λ-returns, one minibatch per row of ``order``.

        features [B, D], returns [B], order [M, b] indices into the batch. Returns the mean
        minibatch loss.
        """
        variables = self.value.trainable_variables
        total = tf.constant(0.0)
        for rows in tf.range(tf.shape(order)[0]):
            index = order[rows]
            with tf.GradientTape() as tape:
                prediction = self.value(tf.gather(features, index))[:, 0]
                loss = tf.reduce_mean(tf.square(prediction - tf.gather(returns, index)))
            self.value_optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            total += loss
        return total / tf.cast(tf.maximum(tf.shape(order)[0], 1), tf.float32)

    def _minibatch_order(self, size: int) -> np.ndarray:
        """[value_epochs · ⌊size / b⌋, b] shuffled indices, b = min(value_batch_size, size).

        Each epoch is a fresh permutation; the size % b samples it leaves out differ per epoch.
        """
        batch_size = min(self.config.value_batch_size, size)
        per_epoch = size // batch_size
        epochs = [self.rng.permutation(size)[: per_epoch * batch_size] for _ in range(self.config.value_epochs)]
        if not epochs:
            return np.zeros((0, batch_size), dtype=np.int32)
        return np.concatenate(epochs).reshape(-1, batch_size).astype(np.int32)

    def _values_and_next_values(self, batch, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """V(s_t) [T, N] and V(s_{t+1}) [T, N], the latter from final observations where episodes ended.

        One compiled call evaluates the batch, the final observations and the last observations.
        """
        steps, n_envs = batch.rewards.shape
        extra = np.concatenate([batch.final_observations, batch.last_observations])
        all_values = self._value_of(np.concatenate([features, self._features(extra)])).numpy()
        values = all_values[: steps * n_envs].reshape(steps, n_envs)
        final_values = all_values[steps * n_envs: steps * n_envs + len(batch.final_observations)]
        next_values = np.empty_like(values)
        next_values[:-1] = values[1:]
        next_values[-1] = all_values[-n_envs:]
        next_values[batch.final_index[:, 0], batch.final_index[:, 1]] = final_values
        return values, next_values

    # ------------------------------------------------------------------ acting

    def _features(self, observations: np.ndarray) -> np.ndarray:
        """Raw observations [B, *obs_shape] → normalized features [B, D] (NumPy, current statistics)."""
        return self.normalizer.numpy_normalize()(self.encoder.numpy(observations))

    def _numpy_actor(self, deterministic: bool = False) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """A frozen NumPy copy of the policy: obs [N, ...] → (env actions, stored actions).

        Stochastic actions are drawn with the agent's generator; deterministic ones are the
        most probable actions.
        """
        normalize = self.normalizer.numpy_normalize()
        net = NumpyMLP(self.policy.net)
        log_std = None if self.policy.log_std is None else self.policy.log_std.numpy()
        encode, head, rng = self.encoder.numpy, self.head, None if deterministic else self.rng

        def act(observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            actions = head.numpy_act(net(normalize(encode(observations))), log_std, rng)
            return head.to_env(actions), actions

        return act

    def features_graph(self, observations: tf.Tensor) -> tf.Tensor:
        """Raw observations [B, *obs_shape] → normalized features [B, D], in the TensorFlow graph."""
        return self.normalizer(self.encoder.tensorflow(observations))

    def deterministic_action_graph(self, observations: tf.Tensor) -> tf.Tensor:
        """Raw observations [B, *obs_shape] → most probable actions [B, *A] in environment units."""
        return self.head.deterministic(self.policy(self.features_graph(observations)))

    def predict(self, observations: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions for a batch of raw observations [B, *obs_shape] (or one observation).

        Deterministic actions come from the compiled TensorFlow graph (the one exported);
        stochastic ones are sampled with the agent's random generator.
        """
        batch = self.encoder.check(observations)
        if deterministic:
            return self._deterministic_action(batch).numpy()
        return self._numpy_actor()(batch)[0]

    def evaluate(self, episodes: int = 10, env: "str | gym.Env | None" = None, seed: int | None = None,
                 deterministic: bool = True) -> dict[str, float]:
        """Mean and standard deviation of the undiscounted return over ``episodes`` episodes.

        Runs a separate environment (``env``, or a new one made from the training env id with
        ``config.env_kwargs``); episode i is reset with ``seed + i`` (default seed: the agent's seed + 10_000).
        Returns ``mean_return``, ``std_return``, ``episodes``, ``returns`` (per episode),
        ``seed`` and ``deterministic``.
        """
        if not isinstance(episodes, int) or episodes < 1:
            raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
        env = env if env is not None else self.env_id
        if env is None:
            raise ValueError("this agent was built from an environment instance without a registered id; "
                             "pass evaluate(env=...) an environment to evaluate on")
        eval_env = env
        if isinstance(env, str):  # the training env id is built with the training env_kwargs
            eval_env = make_env(env, self.config.env_kwargs if env == self.env_id else None)
        if eval_env.observation_space.shape != self.observation_space.shape:
            if eval_env is not env:
                eval_env.close()
            raise ValueError(f"the evaluation environment's observations have shape "
                             f"{eval_env.observation_space.shape} but the policy takes "
                             f"{self.observation_space.shape}: was it built with other gymnasium.make arguments?")
        actor = self._numpy_actor(deterministic)
        returns = []
        seed = self.seed + 10_000 if seed is None else seed
        for episode in range(episodes):
            observation, _ = eval_env.reset(seed=seed + episode)
            done, total = False, 0.0
            while not done:
                action = actor(np.asarray(observation, dtype=np.float32)[None])[0][0]
                observation, reward, terminated, truncated, _ = eval_env.step(action)
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
        if isinstance(env, str):
            eval_env.close()
        return {"mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
                "episodes": episodes, "returns": returns, "seed": seed, "deterministic": deterministic}

    # ------------------------------------------------------------------ persistence

    def save(self, run_dir: str) -> str:
        """Write a resumable checkpoint under ``run_dir`` (see :mod:`trpo_tf.checkpoint`); returns its path."""
        from trpo_tf import checkpoint
        return checkpoint.save(self, run_dir)

    @classmethod
    def load(cls, run_dir: str, env: EnvLike | None = None) -> "TRPO":
        """Rebuild an agent from the latest checkpoint in ``run_dir`` (on ``env``, default: the run's env id)."""
        from trpo_tf import checkpoint
        env_id, config, seed = checkpoint.read_run(run_dir)
        if env is None and env_id is None:
            raise ValueError(f"{run_dir} was trained on an environment instance without a registered id; "
                             "pass TRPO.load(run_dir, env=...) the environment to continue on")
        agent = cls(env if env is not None else env_id, config, seed=seed)
        checkpoint.restore(agent, run_dir)
        return agent

    def export(self, out_dir: str, version: int | None = None, evaluation: dict[str, Any] | None = None,
               command: str | None = None) -> str:
        """Write the policy as a SavedModel to ``out_dir/<version>/`` (see :mod:`trpo_tf.export`); returns that path.

        ``version`` defaults to the next integer; ``evaluation`` (a dict from :meth:`evaluate`)
        defaults to a fresh 10-episode evaluation; ``command`` is recorded in the metadata.
        """
        from trpo_tf import export
        return export.export_saved_model(self, out_dir, version=version, evaluation=evaluation, command=command)


def explained_variance(predictions: np.ndarray, targets: np.ndarray) -> float:
    """1 − Var(targets − predictions) / Var(targets); NaN when the targets are constant."""
    variance = np.var(targets)
    return float(1.0 - np.var(targets - predictions) / variance) if variance > 0 else math.nan


def _timed(function: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """(function(*args), seconds it took)."""
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def _flatten_time(array: np.ndarray) -> np.ndarray:
    """[T, N, ...] → [T·N, ...]."""
    return array.reshape((-1,) + array.shape[2:])
