"""The TRPO agent: the loop that wires sampler → advantages → policy update → value fit.

One iteration of :meth:`TRPO.iterate` reads like the algorithm (Schulman et al., 2015):

    batch = sampler.collect(policy snapshot)                # sampling/
    advantages, returns = GAE(batch, V)                     # advantages.py
    θ = trust-region step on the surrogate advantage        # update.PolicyUpdate → trust_region.py
    fit V on the λ-returns                                  # update.ValueFit

The policy step and the value fit are each one compiled ``tf.function``; acting during
rollouts uses a NumPy snapshot of the policy taken once per iteration, so no TensorFlow
call is made per environment step.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import math
import numbers
import os
import time
import warnings
import weakref
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import tensorflow as tf

from trpo_tf import advantages as gae
from trpo_tf import checkpoint, evaluation, export, monitor, rundir, startup
from trpo_tf.config import TRPOConfig
from trpo_tf.errors import ConfigError, InputError, NetworkError, SpaceMismatchError
from trpo_tf.files import DEFAULT_CHECKPOINT_EVERY
from trpo_tf.normalization import RewardScaler
from trpo_tf.policies import make_policy, networks
from trpo_tf.policies.networks import NetworkSpec
from trpo_tf.policies import recurrent as rnn
from trpo_tf.policies.policy import RecurrentValue, make_value
from trpo_tf.sampling import Batch, EnvLike, Sampler, make_env, make_sampler
from trpo_tf.sampling.masks import checked_user_masks
from trpo_tf.update import PolicyUpdate, RecurrentValueFit, ValueFit, trace_in_turn

RETURN_WINDOW = 100  # episodes averaged into ``episode_return_mean``
_OPEN_AGENTS: "weakref.WeakSet[TRPO]" = weakref.WeakSet()  # agents not closed: each owns its networks' variables
# How well the step's quadratic KL model and linear surrogate model predicted the full step (PolicyUpdate).
QUADRATIC_MODEL_KEYS = ("kl_predicted", "kl_full_step", "kl_ratio", "surrogate_predicted", "surrogate_full_step",
                        "cg_residual")
Callback = Callable[[dict[str, Any]], Any]
MAX_TIMESTEPS_VARIABLE = "TRPO_TF_MAX_TIMESTEPS"
"""Caps every :meth:`TRPO.learn` call (and so ``trpo-tf train``) at this many steps: for smoke tests and the docs' tests."""


class TRPO:
    """Trust Region Policy Optimization on a gymnasium environment.

    Args:
        env: an environment id (``"CartPole-v1"``), a gymnasium ``Env`` or a ``VectorEnv``
            created with ``autoreset_mode=AutoresetMode.SAME_STEP``.
        config: hyperparameters (:class:`TRPOConfig`).
        seed: seeds the environments, the weight initialization and, through independent
            streams (``SeedSequence(seed).spawn``), action sampling, minibatch order and
            stochastic evaluation; the same seed on the same machine gives the same history.
            None draws one.
        policy_network: a network of your own instead of the MLP of ``config.policy_hidden`` (which
            is then not used): a ``keras.Model`` mapping normalized features [B, D] to hidden
            features [B, H], or a builder ``D -> keras.Model`` (a fresh network per call: what
            :meth:`load` needs when Keras cannot rebuild the network from its config). The library
            adds the output layer (the distribution's parameters). A model passed as such is trained
            in place. A policy network that is a chain of Dense layers with NumPy activations acts
            in NumPy; any other acts through one compiled TensorFlow call per vectorized step, in
            this process only (no ``n_workers`` > 1, no Ray).
        value_network: the same for the value function, instead of ``config.value_hidden`` (the
            library adds one output). Policy and value must not share variables (NetworkError): a
            shared trunk would let the value fit move the policy outside the trust region.

    Attributes:
        config (TRPOConfig): the hyperparameters.
        policy (Policy): the policy (:class:`~trpo_tf.policies.policy.Policy`).
        value (keras.Model): the value function, a Keras model of normalized features.
        sampler: what collects the batches: in this process, or over ``config.n_workers`` workers
            (``config.sampler``).
        policy_update (PolicyUpdate): the compiled trust-region step.
        value_fit (ValueFit): the compiled value fit.
        vector_env: the environments when they are stepped in this process (None with workers).
        history (list[dict]): one dict per iteration (see :meth:`learn`).
        timesteps (int): environment steps taken so far, over all environments.
        log_dir (str | None): the run directory this agent writes (``learn(log_dir=...)``) or was
            loaded from, or None.
    """

    def __init__(self, env: EnvLike, config: TRPOConfig | None = None, seed: int | None = None, *,
                 policy_network: NetworkSpec | None = None, value_network: NetworkSpec | None = None):
        self.config = config if config is not None else TRPOConfig()
        if not isinstance(self.config, TRPOConfig):
            raise TypeError(f"config must be a TRPOConfig, got {type(self.config).__name__}")
        cfg = self.config
        startup.configure_xla_cache()  # before the first compile; not when the user set TF_XLA_FLAGS
        self.seed = int(np.random.default_rng().integers(2**31)) if seed is None else int(seed)
        self.env_id = env if isinstance(env, str) else getattr(getattr(env, "spec", None), "id", None)
        # Independent random streams: evaluating or predicting mid-training draws nothing from
        # the streams that training uses, so it does not change the training trajectory.
        sampling, minibatches, evaluation_stream = np.random.SeedSequence(self.seed).spawn(3)
        self.sampler: Sampler = make_sampler(env, n_envs=cfg.n_envs, n_workers=cfg.n_workers, backend=cfg.sampler,
                                             env_kwargs=cfg.env_kwargs, seed=self.seed, stream=sampling,
                                             restart_workers=cfg.restart_workers,
                                             connect_timeout=cfg.ray_connect_timeout, action_masks=cfg.action_masks)
        try:
            self._build(policy_network, value_network, minibatches, evaluation_stream)
        except BaseException:
            self.sampler.close()  # the workers, if any, started first: they tell the spaces
            raise
        _OPEN_AGENTS.add(self)

    def _build(self, policy_network: NetworkSpec | None, value_network: NetworkSpec | None,
               minibatches: np.random.SeedSequence, evaluation_stream: np.random.SeedSequence) -> None:
        """The models, the compiled steps and the agent's own state, for the sampler's spaces."""
        cfg = self.config
        self.observation_space, self.action_space = self.sampler.observation_space, self.sampler.action_space
        self.policy = make_policy(self.observation_space, self.action_space, cfg.policy_hidden, cfg.activation,
                                  cfg.init_log_std, cfg.normalize_observations, seed=self.seed * 7 + 1,
                                  encoder=cfg.encoder, cnn_features=cfg.cnn_features, network=policy_network,
                                  action_distribution=cfg.action_distribution,
                                  action_masks=self.mask_source is not None, recurrent=cfg.recurrent,
                                  recurrent_units=cfg.recurrent_units, truncate=cfg.recurrent_sequence_length)
        if cfg.recurrent is not None and self.mask_source is not None:
            raise ConfigError(f"TRPOConfig.recurrent={cfg.recurrent!r} cannot use the action masks the environments "
                              f"give ({self.mask_source}): recurrent policies take no action masks yet; set "
                              "action_masks='off' to ignore them")
        if self.sampler.needs_picklable_actor and not self.policy.acts_in_numpy:  # workers act with the NumPy copy
            what = (f"observation space {self.observation_space} goes through a CNN, which"
                    if self.policy.trunk is not None else f"the policy network ({self.policy.network.name})")
            raise NetworkError(f"{what} acts through TensorFlow, which sampling workers do not run: use n_workers=1 "
                               f"and sampler='local' (got n_workers={cfg.n_workers}, sampler={cfg.sampler!r}), or a "
                               "policy network of Dense layers on vector observations (which acts in NumPy)")
        self.value = make_value(self.policy, cfg.value_hidden, cfg.activation, cfg.cnn_features, seed=self.seed * 7 + 4,
                                network=value_network)
        networks.check_separate(self.policy, self.value)
        self._check_networks_are_its_own()
        self.reward_scaler = RewardScaler(cfg.n_envs, cfg.gamma)
        self.minibatch_rng = np.random.default_rng(minibatches)
        self.evaluation_rng = np.random.default_rng(evaluation_stream)
        self.policy_update = PolicyUpdate(self.policy, cfg)
        self.value_fit = (RecurrentValueFit if self.policy.recurrent else ValueFit)(
            self.value, self.policy.model_input_spec(), cfg)
        # A recurrent value function's state per environment before the next batch's first step [N, S].
        self.value_states = np.zeros((cfg.n_envs, cfg.recurrent_state_size), np.float32)
        self.timesteps = 0
        self.total_timesteps: int | None = None  # what the running (or last) learn call trains to: the schedules' end
        self.log_dir: str | None = None
        self.history: list[dict[str, Any]] = []
        self.recent_returns: collections.deque[float] = collections.deque(maxlen=RETURN_WINDOW)
        self._deterministic_action = tf.function(self.policy.deterministic_action,
                                                 input_signature=[self.policy.observation_spec()], autograph=False)
        self._masked_deterministic_action: Any = None  # made by the first predict with action masks
        self._deterministic_step: Any = None  # a recurrent policy's, made by its first deterministic predict
        self._background = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="value-fit")
        self._compiled = False  # whether an iteration ran: its steps are compiled

    @property
    def vector_env(self) -> gym.vector.VectorEnv | None:
        """The environments when they are stepped in this process (None with sampling workers)."""
        return self.sampler.vector_env

    @property
    def mask_source(self) -> str | None:
        """Where the environments' action masks come from ("info", "method" or "observation"; see
        :mod:`trpo_tf.sampling.masks`), or None when the policy takes none."""
        return self.sampler.mask_source

    # ------------------------------------------------------------------ the algorithm

    def learn(self, total_timesteps: int | float, callback: Callback | None = None, *, log_dir: str | None = None,
              progress_bar: bool = False, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
              reset_num_timesteps: bool = False) -> "TRPO":
        """Train for ``total_timesteps`` more environment steps (whole iterations, so up to one
        iteration more); calling it again continues where the last call stopped.

        Args:
            total_timesteps: steps to add, over all environments; any integral number (``1e6``). When the
                environment variable ``TRPO_TF_MAX_TIMESTEPS`` is set, at most that many (with a warning):
                a small budget for smoke tests, which the documentation's tests use.
            callback: ``callback(entry)`` after each iteration (before the loggers, so keys it adds
                to ``entry`` are logged); returning False stops training. ``learn`` does not close
                it, so it can serve several calls. See :mod:`trpo_tf.callbacks`.
            log_dir: a run directory, written as ``trpo-tf train`` writes one (``run.json``,
                ``config.yaml``, ``progress.csv``, TensorBoard events, ``checkpoints/``; a last
                checkpoint when training ends), so ``trpo-tf plot/evaluate/export`` work on it.
                It must be new, or this agent's own (one it trained in or was loaded from); it is
                locked while training (another training there is refused at once).
            progress_bar: show a progress bar over these steps.
            checkpoint_every: with ``log_dir``, checkpoint every this many iterations (0: only at the end).
            reset_num_timesteps: count from zero: :attr:`timesteps` and :attr:`history` start
                again (weights, statistics and environments carry on).

        Each iteration appends to :attr:`history` a dict with ``iteration``, ``timesteps``,
        ``episode_return_mean`` (last 100 finished episodes), ``episodes``, ``kl`` (mean
        KL(old ‖ new) after the accepted step), ``surrogate_gain``, ``line_search_steps``,
        ``step_accepted``, ``entropy``, ``max_kl`` (this step's δ), the quadratic model's accuracy
        at the full step before any backtracking (``kl_predicted``, ``kl_full_step``, ``kl_ratio``,
        ``surrogate_predicted``, ``surrogate_full_step``, ``cg_residual``: see
        :class:`~trpo_tf.update.PolicyUpdate`), ``value_loss``, ``value_lr`` (this value fit's
        step size), ``explained_variance``, ``fps``, the seconds spent in ``sampling_seconds``,
        ``advantage_seconds``, ``policy_step_seconds`` and ``value_fit_seconds``, and with
        workers ``worker_restarts`` (workers replaced during the iteration: ``restart_workers``).
        With a linear schedule (``TRPOConfig.max_kl_schedule``, ``value_lr_schedule``), δ or the
        step size falls over the steps from 0 to the total this call trains to (a resumed
        ``trpo-tf train`` trains to the run's total, so it continues the same schedule).
        """
        steps = _capped(_step_count(total_timesteps))
        if reset_num_timesteps:
            if log_dir is not None and self.log_dir is not None and _same_path(log_dir, self.log_dir):
                raise InputError(f"reset_num_timesteps starts a new count: pass a new log_dir, not {log_dir}, "
                                 "whose run it would rewrite")
            self.timesteps = 0
            self.history.clear()
            self.recent_returns.clear()
        target = self.timesteps + steps
        self.total_timesteps = target
        loggers = monitor.Callbacks([])  # this call's own: closed at its end (the user's callback is not)
        with contextlib.ExitStack() as run_directory:
            if log_dir is not None:
                run_directory.enter_context(rundir.lock_run_dir(log_dir))  # one training per run directory
                self._open_log_dir(log_dir, target)
                loggers.callbacks += monitor.run_directory_loggers(self, log_dir, checkpoint_every)
            if progress_bar:
                loggers.callbacks.append(monitor.ProgressBar(target, initial=self.timesteps,
                                                             description=self.env_id))
            try:
                while self.timesteps < target:
                    entry = self.iterate()
                    keep_going = callback is None or callback(entry) is not False
                    if loggers(entry) is False or not keep_going:
                        break
            finally:
                loggers.close()
            if log_dir is not None:
                checkpoint.save(self, log_dir)
        return self

    def _open_log_dir(self, log_dir: str, total_timesteps: int) -> None:
        """Make ``log_dir`` this agent's run directory (see :meth:`learn`), recording the run's target length."""
        if self.log_dir is None or not _same_path(log_dir, self.log_dir):
            if rundir.run_files(log_dir) == [checkpoint.RUN_FILE]:  # created for this agent (trpo-tf train), unused
                checkpoint.check_same_run(self, log_dir)
            else:
                rundir.check_new_run_dir(log_dir)
                checkpoint.write_run(log_dir, self)
            self.log_dir = log_dir
        checkpoint.update_run(log_dir, total_timesteps=total_timesteps)

    def iterate(self) -> dict[str, Any]:
        """One TRPO iteration: rollout, GAE, trust-region step, value fit. Returns its history entry.

        δ and the value step size follow their schedules (``TRPOConfig.scheduled``) over the run
        to :attr:`total_timesteps`; before any ``learn`` call, at their full values."""
        if not self._compiled:  # XLA compiles (or loads from its cache) the steps now
            with startup.dropping_cache_messages():
                entry = self._iterate()
            self._compiled = True
            return entry
        return self._iterate()

    def _iterate(self) -> dict[str, Any]:
        start = time.perf_counter()
        remaining = 1.0 if not self.total_timesteps else max(0.0, 1.0 - self.timesteps / self.total_timesteps)
        max_kl, value_lr = self.config.scheduled("max_kl", remaining), self.config.scheduled("value_lr", remaining)
        batch = self.sampler.collect(self.policy.actor(), self.config.steps_per_env)
        self.timesteps += batch.size
        self.recent_returns.extend(batch.episode_returns)
        sampled = time.perf_counter()

        features = self._observe(batch)
        if self.policy.recurrent:  # segments: the states they started from, where episodes start
            features = rnn.sequence_inputs(features, batch.episode_starts, batch.recurrent_states)
        values, next_values = self.values_and_next_values(batch, features)
        advantages, returns = self._advantages(batch, values, next_values)
        estimated = time.perf_counter()

        # The policy step and the value fit read the same batch and write disjoint variables:
        # they run side by side (TensorFlow releases the GIL), with the same result as in turn.
        trace_in_turn(self.policy_update, self.value_fit)
        self.value_fit.set_learning_rate(value_lr)
        value_fit = self._background.submit(_timed, self.value_fit, features, returns,
                                            self.value_fit.minibatch_order(batch.size, self.minibatch_rng))
        actions = _flatten_time(batch.actions).astype(self.policy.head.action_dtype.as_numpy_dtype)
        masks = None if batch.action_masks is None else _flatten_time(batch.action_masks)
        step, policy_seconds = _timed(self.policy_update, features, actions, advantages, max_kl, masks)
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
            "max_kl": max_kl,
            **{key: float(step[key]) for key in QUADRATIC_MODEL_KEYS},
            "value_loss": float(value_loss),
            "value_lr": value_lr,
            "explained_variance": explained_variance(values.reshape(-1), returns),
            "fps": batch.size / (done - start),
            "sampling_seconds": sampled - start,
            "advantage_seconds": estimated - sampled,
            "policy_step_seconds": policy_seconds,
            "value_fit_seconds": value_seconds,
        }
        restarts = self.sampler.take_restarts()
        if restarts is not None:  # a backend that can replace workers
            entry["worker_restarts"] = restarts
        self.history.append(entry)
        return entry

    def _observe(self, batch: Batch) -> Any:
        """Update the observation statistics with the batch; its model inputs (normalized features
        [T·N, D], with the frames for a CNN; see :mod:`trpo_tf.policies.policy`)."""
        observations = _flatten_time(batch.observations)
        encoded = self.policy.encoder.numpy(observations)
        self.policy.observe(encoded)
        return self.policy.model_inputs(self.policy.normalizer.numpy_normalize()(encoded), observations)

    def values_and_next_values(self, batch: Batch, features: Any) -> tuple[np.ndarray, np.ndarray]:
        """V(s_t) [T, N] and V(s_{t+1}) [T, N] of ``batch`` (its model inputs ``features``), the latter
        from final observations where episodes ended.

        One compiled call evaluates the batch, the final observations and the last observations.
        """
        steps, n_envs = batch.rewards.shape
        if self.policy.recurrent:
            return self._recurrent_values(batch, features)
        extra = _concatenate([batch.final_observations, batch.last_observations])
        all_values = self.value_fit.predict(_concatenate([features, self.policy.actor().features(extra)]))
        values = all_values[: steps * n_envs].reshape(steps, n_envs)
        final_values = all_values[steps * n_envs: steps * n_envs + len(batch.final_index)]
        next_values = np.empty_like(values)
        next_values[:-1] = values[1:]
        next_values[-1] = all_values[-n_envs:]
        next_values[batch.final_index[:, 0], batch.final_index[:, 1]] = final_values
        return values, next_values

    def _recurrent_values(self, batch: Batch, features: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`values_and_next_values` of a recurrent value function: its cell runs over the segments from
        :attr:`value_states` (reset at episode starts); a final observation is read from the state after its
        episode's last step, the last observations from the states the next batch starts with (which
        :attr:`value_states` becomes)."""
        steps, n_envs = batch.rewards.shape
        fit = self.value_fit
        assert isinstance(fit, RecurrentValueFit)
        segments = rnn.sequence_inputs(features["inputs"], batch.episode_starts, self.value_states)
        flat_values, states = fit.sequence(segments)
        values = flat_values.reshape(steps, n_envs)
        done = batch.terminated[-1] | batch.truncated[-1]
        carried = rnn.next_states(states[-1], done)
        actor_features = self.policy.actor().features
        final_states = states[batch.final_index[:, 0], batch.final_index[:, 1]]
        extra = _concatenate([batch.final_observations, batch.last_observations])
        extra_values, _ = fit.step(actor_features(extra), np.concatenate([final_states, carried]))
        next_values = np.empty_like(values)
        next_values[:-1] = values[1:]
        next_values[-1] = extra_values[-n_envs:]
        next_values[batch.final_index[:, 0], batch.final_index[:, 1]] = extra_values[:len(batch.final_index)]
        self.value_states = carried
        return values, next_values

    def _advantages(self, batch: Batch, values: np.ndarray, next_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """GAE(λ) advantages [T·N] (normalized when configured) and λ-returns [T·N], float32."""
        cfg = self.config
        rewards = (self.reward_scaler.scale(batch.rewards, batch.terminated | batch.truncated)
                   if cfg.normalize_rewards else batch.rewards)
        advantages, returns = gae.compute_gae(rewards, values, next_values, batch.terminated,
                                              batch.truncated, cfg.gamma, cfg.gae_lambda)
        advantages = advantages.reshape(-1)
        if cfg.normalize_advantages:
            advantages = gae.normalize(advantages)
        return advantages.astype(np.float32), returns.reshape(-1)

    # ------------------------------------------------------------------ acting

    def predict(self, observations: np.ndarray, deterministic: bool = True,
                action_masks: np.ndarray | None = None, state: np.ndarray | None = None,
                episode_start: np.ndarray | None = None) -> Any:
        """Actions for a batch of raw observations [B, *obs_shape] (or one observation).

        Deterministic actions (``deterministic=True``) come from the compiled TensorFlow graph (the
        one exported); stochastic ones are sampled with the agent's evaluation random stream (not
        training's). A ``Dict`` space takes a dict of batches by key. ``action_masks`` [B, M] (or [M]
        for one observation; bool, or 0/1), for a Discrete or MultiDiscrete action space: only the
        actions they allow are returned (without them, every action is allowed); InputError for masks
        that do not fit or allow no action.

        A recurrent policy (``TRPOConfig.recurrent``) takes ``state`` [B, S] (float32; None: zeros, new
        episodes; S = 2·units for an LSTM, [h, c], units for a GRU) and ``episode_start`` [B] (bool: these
        rows start an episode, their state is reset to zeros first) and returns ``(actions, state)``: feed
        the returned state to the next call.

        Returns:
            actions [B, *action_shape] in the environment's units; for a recurrent policy (actions, next
            states [B, S]).
        """
        batch = self.policy.encoder.check(observations)
        if self.policy.recurrent:
            return self._predict_recurrent(batch, deterministic, state, episode_start, action_masks)
        if state is not None or episode_start is not None:
            raise InputError("state and episode_start are for recurrent policies (TRPOConfig.recurrent); "
                             "this policy carries no state")
        masks = None if action_masks is None else checked_user_masks(
            action_masks, len(next(iter(batch.values())) if isinstance(batch, dict) else batch), self.action_space)
        if not deterministic:
            return self.policy.actor().act(batch, self.evaluation_rng, masks)[0]
        if masks is None:
            return self._deterministic_action(batch).numpy()
        if self._masked_deterministic_action is None:
            size = masks.shape[1]
            self._masked_deterministic_action = tf.function(
                self.policy.deterministic_action, autograph=False,
                input_signature=[self.policy.observation_spec(), tf.TensorSpec([None, size], tf.bool)])
        return self._masked_deterministic_action(batch, masks).numpy()

    def _predict_recurrent(self, batch: Any, deterministic: bool, state: np.ndarray | None,
                           episode_start: np.ndarray | None, action_masks: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` of a recurrent policy: (actions [B, *A], next states [B, S])."""
        if action_masks is not None:
            raise InputError("a recurrent policy takes no action masks")
        rows = len(next(iter(batch.values())) if isinstance(batch, dict) else batch)
        size = self.policy.state_size
        state = np.zeros((rows, size), np.float32) if state is None else np.asarray(state, np.float32)
        if state.shape != (rows, size):
            raise InputError(f"state must be float32 [{rows}, {size}] (one row per observation; "
                             f"{self.config.recurrent} of {self.config.recurrent_units} units), got shape {state.shape}")
        if episode_start is not None:
            state = rnn.next_states(state, np.broadcast_to(np.asarray(episode_start, bool).reshape(-1), (rows,)))
        if not deterministic:
            actions, _, state = self.policy.actor().act_recurrent(batch, state, self.evaluation_rng)
            return actions, state
        if self._deterministic_step is None:
            self._deterministic_step = tf.function(
                lambda observations, states: self._recurrent_deterministic(observations, states), autograph=False,
                input_signature=[self.policy.observation_spec(), self.policy.state_spec()])
        actions, state = self._deterministic_step(batch, state)
        return np.asarray(actions), np.asarray(state)

    def _recurrent_deterministic(self, observations: Any, states: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        parameters, states = self.policy.step_parameters(observations, states)
        return self.policy.head.deterministic(parameters), states

    def evaluate(self, episodes: int = evaluation.DEFAULT_EPISODES, env: str | gym.Env | None = None,
                 seed: int | None = None, deterministic: bool = True) -> dict[str, Any]:
        """Mean and standard deviation of the undiscounted return over ``episodes`` episodes.

        Runs a separate environment (``env``, or a new one made from the training env id with
        ``config.env_kwargs``); episode i is reset with ``seed + i`` (default seed:
        :data:`trpo_tf.evaluation.DEFAULT_SEED`, as ``trpo-tf evaluate``). Acts as rollouts do
        (:meth:`Policy.actor`: the NumPy snapshot when the network has one), on the action masks the
        environment gives when the policy takes them (from the training environments' source). Returns
        ``mean_return``, ``std_return``, ``episodes``, ``returns`` (per episode), ``seed`` and
        ``deterministic``.
        """
        if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
            raise InputError(f"episodes must be a positive integer, got {episodes!r}")
        target = env if env is not None else self.env_id
        if target is None:
            raise InputError("this agent was built from an environment instance without a registered id; "
                             "pass evaluate(env=...) an environment to evaluate on")
        eval_env = self._evaluation_env(target)
        try:
            if eval_env.observation_space.shape != self.observation_space.shape:
                raise SpaceMismatchError(
                    f"the evaluation environment's observations have shape {eval_env.observation_space.shape} "
                    f"but the policy takes {self.observation_space.shape}: was it built with other "
                    "gymnasium.make arguments?")
            snapshot, rng = self.policy.actor(), None if deterministic else self.evaluation_rng
            act: Callable[..., np.ndarray] = lambda observation, masks=None: snapshot.act(observation, rng, masks)[0]
            if self.policy.recurrent:  # carries the state, reset at every episode start
                act = evaluation.RecurrentActor(lambda observation, state: snapshot.act_recurrent(
                    observation, state, rng)[::2], lambda batch: np.zeros((batch, self.policy.state_size), np.float32))
            result = evaluation.run_episodes(eval_env, act, episodes, evaluation.DEFAULT_SEED if seed is None else seed,
                                             self.mask_source)
        finally:
            if eval_env is not env:
                eval_env.close()
        return dict(result, deterministic=deterministic)

    def _evaluation_env(self, target: str | gym.Env) -> gym.Env:
        """``target`` itself when it is an environment, else a new one of that id (with ``config.env_kwargs``
        when it is the training env id)."""
        if not isinstance(target, str):
            return target
        return make_env(target, self.config.env_kwargs if target == self.env_id else None)

    # ------------------------------------------------------------------ state and persistence

    def state(self) -> dict[str, Any]:
        """The agent's Python-side training state as plain data (the sampler's included)."""
        return {"iteration": len(self.history), "timesteps": int(self.timesteps), "history": list(self.history),
                "recent_returns": [float(r) for r in self.recent_returns],
                "rng": {"minibatch": self.minibatch_rng.bit_generator.state,
                        "evaluation": self.evaluation_rng.bit_generator.state},
                "sampler": self.sampler.state(), "value_states": self.value_states.copy()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state`; raises ValueError when it does not fit this agent."""
        streams = {"minibatch": self.minibatch_rng, "evaluation": self.evaluation_rng}
        for name, generator in streams.items():
            if state["rng"][name].get("bit_generator") != type(generator.bit_generator).__name__:
                raise ValueError(f"the {name} random generator is {state['rng'][name].get('bit_generator')}, "
                                 f"expected {type(generator.bit_generator).__name__}")
        self.sampler.load_state(state["sampler"])
        if "value_states" in state:  # absent from checkpoints written before recurrent policies
            self.value_states = np.asarray(state["value_states"], np.float32).reshape(self.value_states.shape)
        self.timesteps = int(state["timesteps"])
        self.history[:] = state["history"]
        self.recent_returns.clear()
        self.recent_returns.extend(state["recent_returns"])
        for name, generator in streams.items():
            generator.bit_generator.state = state["rng"][name]

    def network_records(self) -> dict[str, Any]:
        """How the run directory records the policy and value networks (:func:`networks.network_record`):
        None for a built-in MLP, else the Keras config of the user's network (or why there is none)."""
        value = self.value.network if isinstance(self.value, RecurrentValue) else self.value  # behind its cell
        return {"policy_network": networks.network_record(self.policy.network),
                "value_network": networks.network_record(value)}

    def trackables(self) -> dict[str, Any]:
        """The TensorFlow state a checkpoint holds: policy (with its normalizer and head), value,
        the value optimizer's moments and the reward scaler."""
        return {"policy": self.policy, "value": self.value, "value_optimizer": self.value_fit.optimizer,
                "reward_scaler": self.reward_scaler}

    def save(self, run_dir: str) -> str:
        """Write a resumable checkpoint under ``run_dir`` (see :mod:`trpo_tf.checkpoint`); returns its path."""
        return checkpoint.save(self, run_dir)

    @classmethod
    def load(cls, run_dir: str, env: EnvLike | None = None, resume: bool = False, trust: bool = False, *,
             policy_network: NetworkSpec | None = None, value_network: NetworkSpec | None = None) -> "TRPO":
        """Rebuild an agent from the newest intact checkpoint in ``run_dir`` (on ``env``, default: the run's env id).

        With ``resume=True`` the environments' pickled state is restored too, so training
        continues exactly where it stopped. Unpickling runs code, so this is done only for a
        state signed with this user's run key (a run this user saved on this machine, see
        :mod:`trpo_tf.signing`), or with ``trust=True`` for a run you trust whoever wrote;
        otherwise :class:`~trpo_tf.errors.UntrustedRunError`. Without ``resume`` nothing is
        unpickled and the environments start fresh episodes: safe for evaluating, exporting
        or continuing to train a downloaded run. An env id that imports a module (``"module:Env-v0"``)
        is taken from the run only with ``trust=True`` or, resuming, this user's signature for it
        (else :class:`~trpo_tf.errors.UntrustedModuleError`): pass ``env`` to name it yourself.

        A run trained with networks of your own rebuilds them from the Keras configs its
        ``run.json`` records (custom layers must be registered with
        ``keras.saving.register_keras_serializable``); pass ``policy_network`` / ``value_network``
        (as given to the constructor) when Keras cannot, as the NetworkError then says.
        """
        env_id, config, seed = checkpoint.read_run(run_dir)
        recorded = checkpoint.read_networks(run_dir)
        given = {"policy_network": policy_network, "value_network": value_network}
        specs = {role: networks.network_for_load(recorded.get(role), given[role], role, run_dir) for role in given}
        if env is None:  # the run's env id: a module it names is imported only when trusted
            checkpoint.check_recorded_env(run_dir, env_id, trust, signed=resume)
        target = env if env is not None else env_id
        if target is None:
            raise InputError(f"{run_dir} was trained on an environment instance without a registered id; "
                             "pass TRPO.load(run_dir, env=...) the environment to continue on")
        agent = cls(target, config, seed=seed, **specs)
        try:
            checkpoint.restore(agent, run_dir, environments=resume, trust=trust)
        except BaseException:
            agent.close()
            raise
        agent.log_dir = run_dir  # learn(log_dir=run_dir) continues this run
        return agent

    def export(self, out_dir: str, version: int | None = None, *, episodes: int = evaluation.DEFAULT_EPISODES,
               seed: int = evaluation.DEFAULT_SEED, env: str | gym.Env | None = None,
               command: str | None = None) -> str:
        """Write the policy as a SavedModel to ``out_dir/<version>/`` (see :mod:`trpo_tf.export`); returns that path.

        ``version`` defaults to the next integer. The metadata's ``evaluation`` is measured through
        the SavedModel itself: ``episodes`` deterministic episodes of its ``serving_default`` graph,
        episode i reset with ``seed + i``, on ``env`` (default: a new environment from the training env
        id and ``config.env_kwargs``) — so ``trpo-tf evaluate EXPORT --episodes N --seed S``
        reproduces it. ``episodes=0``, or an agent without an env id and no ``env``, records none.
        ``command`` is recorded in the metadata.
        """
        if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 0:
            raise InputError(f"episodes must be a non-negative integer, got {episodes!r}")
        target = env if env is not None else self.env_id
        metadata = export.build_metadata(
            env_id=self.env_id, observation_space=self.observation_space, action_space=self.action_space,
            timesteps=self.timesteps, seed=self.seed, evaluation=None, config=self.config.to_dict(),
            command=command, mask_source=self.mask_source)

        def evaluate_export(path: str) -> dict[str, Any]:
            assert target is not None
            eval_env = self._evaluation_env(target)
            try:
                return evaluation.evaluate_saved_model(path, eval_env, episodes, seed,
                                                       dict_observations=self.policy.encoder.keys is not None,
                                                       mask_source=self.mask_source)
            finally:
                if eval_env is not target:
                    eval_env.close()

        return export.export_saved_model(self.policy, self.value, out_dir, metadata, version=version,
                                         evaluate=evaluate_export if episodes and target is not None else None)

    def close(self) -> None:
        """Close the environments and the value-fit thread; its networks may then go to another agent."""
        _OPEN_AGENTS.discard(self)
        self.sampler.close()
        self._background.shutdown(wait=True)

    def _check_networks_are_its_own(self) -> None:
        """NetworkError when a variable of its policy or value network belongs to another open agent.

        The same ``keras.Model`` given to two agents would be trained by both, each moving the
        other's policy outside its trust region without a word.
        """
        for other in list(_OPEN_AGENTS):
            shared = networks.shared_variables([self.policy, self.value], [other.policy, other.value])
            if shared:
                raise NetworkError(
                    f"policy_network or value_network is already in another TRPO agent, which is not closed "
                    f"(they would share {shared}): give each agent its own model, e.g. a builder "
                    "(feature size D -> keras.Model) or keras.models.clone_model(model), or close() the other first")

    def __enter__(self) -> "TRPO":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def explained_variance(predictions: np.ndarray, targets: np.ndarray) -> float:
    """1 − Var(targets − predictions) / Var(targets); NaN when the targets are constant."""
    variance = np.var(targets)
    return float(1.0 - np.var(targets - predictions) / variance) if variance > 0 else math.nan


def _step_count(value: Any) -> int:
    """``value`` as a non-negative int of steps: ints, NumPy integers and integral floats (``1e4``)."""
    integral = isinstance(value, numbers.Integral) or (isinstance(value, numbers.Real) and math.isfinite(value)
                                                        and float(value).is_integer())
    if isinstance(value, bool) or not integral or value < 0:
        raise InputError(f"total_timesteps must be a non-negative whole number of steps, got {value!r}")
    return int(value)


def _capped(steps: int) -> int:
    """``steps``, or ``$TRPO_TF_MAX_TIMESTEPS`` when that is set and smaller (with a warning saying so)."""
    text = os.environ.get(MAX_TIMESTEPS_VARIABLE, "").strip()
    if not text:
        return steps
    try:
        cap = _step_count(float(text.replace("_", "")))
    except (InputError, ValueError):
        raise InputError(f"{MAX_TIMESTEPS_VARIABLE}={text!r}: expected a non-negative whole number of steps "
                         "(or leave it unset)") from None
    if cap < steps:
        warnings.warn(f"{MAX_TIMESTEPS_VARIABLE}={text}: training {cap:,} of the {steps:,} steps asked for",
                      UserWarning, stacklevel=3)
    return min(steps, cap)


def _same_path(first: str, second: str) -> bool:
    return os.path.realpath(first) == os.path.realpath(second)


def _timed(function: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """(function(*args), seconds it took)."""
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def _flatten_time(array: Any) -> Any:
    """[T, N, ...] → [T·N, ...] (each array of a dict or tuple of them)."""
    return tf.nest.map_structure(lambda x: x.reshape((-1,) + x.shape[2:]), array)


def _concatenate(batches: list[Any]) -> Any:
    """Batches (arrays [B_i, ...], or dicts or tuples of them alike) joined along the batch axis."""
    return tf.nest.map_structure(lambda *arrays: np.concatenate(arrays), *batches)

