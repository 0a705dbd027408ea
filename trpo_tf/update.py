"""The policy update (the trust-region step) and the value fit, each one compiled graph.

Both are built from models and the config and need no environment: call them with a batch
of model inputs (normalized features [B, D]; with the frames too for a policy with a CNN, see
:mod:`trpo_tf.policies.policy`), actions [B, *A], advantages [B] or returns [B]; a masked policy's
update also takes the batch's action masks [B, M] (bool), which every distribution it builds
(π_old, π_new, the curvature product's) is masked by.

    update = PolicyUpdate(policy, config)
    result = update(features, actions, advantages)   # θ moves within KL(π_old ‖ π_new) ≤ δ
    fit = ValueFit(value, feature_dim, config)
    loss = fit(features, returns, fit.minibatch_order(len(features), rng))

A recurrent policy's update and value fit take segments instead of features
(:func:`~trpo_tf.policies.recurrent.sequence_inputs`: model inputs [T·N, ...] time-major, episode starts
[T, N], the states [N, S] each segment started from): π_old, π_new and every H·v recompute the hidden
states over the segments (π_old's with θ_old, held constant), inside the same compiled graph.
:class:`RecurrentValueFit` fits the value function's own cell on windows of the segments.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from trpo_tf import trust_region
from trpo_tf.config import TRPOConfig
from trpo_tf.policies import Policy, kl_divergence
from trpo_tf.policies import recurrent as rnn

Matvec = Callable[[tf.Tensor], tf.Tensor]


class PolicyUpdate:
    """One TRPO step of ``policy`` (Schulman et al., 2015, appendix C), compiled with XLA.

    Calling it with features [B, D], actions [B, *A], advantages [B] and optionally δ (a scalar;
    ``config.max_kl`` when omitted, as a schedule passes it; no retracing) freezes π_old, takes
    the gradient g of the surrogate advantage, solves (H + damping·I) x = g by conjugate
    gradient (H·v by ``config.hvp_method`` on every ⌈1/``fisher_fraction``⌉-th sample), scales
    the step to the quadratic model's KL = δ, and backtracks until the surrogate improves with
    KL ≤ δ, restoring θ_old when no point passes; with ``config.algorithm == "npg"`` it takes the
    full step as it is (natural policy gradient). Returns scalars ``kl``, ``surrogate_gain``,
    ``line_search_steps`` (0 for NPG), ``accepted`` (always true for NPG) and ``entropy`` (at the
    new parameters), and how well the quadratic model of the KL and the linear model of the
    surrogate predicted the full step s = βx: ``kl_predicted`` (½ sᵀHs, H undamped: δ less the
    damping's share), ``kl_full_step`` (the mean KL measured at θ_old + s, before any
    backtracking), ``kl_ratio`` (their quotient), ``surrogate_predicted`` (gᵀs),
    ``surrogate_full_step`` (the surrogate's measured gain at θ_old + s) and ``cg_residual``
    (‖(H + damping·I)x − g‖ / ‖g‖ after ``cg_iters``).

    A masked policy (:attr:`~trpo_tf.policies.Policy.masked`) takes the batch's action masks
    [B, M] (bool) as ``masks``: log-probabilities, entropy, KL and H·v are then those of the
    distributions over the allowed actions.

    ``xla``: compile the step with XLA (None: whenever the policy has no CNN trunk and no recurrent cell;
    False is for benchmarks that time the step both ways).
    """

    def __init__(self, policy: Policy, config: TRPOConfig, xla: bool | None = None):
        self.policy = policy
        self.config = config
        self.fisher_stride = max(1, round(1.0 / config.fisher_fraction))
        features = policy.model_input_spec()
        actions = tf.TensorSpec((None,) + policy.head.action_shape, policy.head.action_dtype)
        # XLA fuses the many small ops of CG and the line search (benchmarks/hvp.py measures the
        # step both ways). It compiles once per batch shape, which the config fixes. The loops are
        # tf.while_loop already, so AutoGraph is off: converting the source is a large part of tracing.
        # Not with a CNN: in an XLA context TensorFlow differentiates a slice by an op
        # (XlaDynamicUpdateSlice) that the forward-over-backward H·v cannot differentiate again;
        # there the convolutions dominate the step anyway. A head that XLA cannot compile for a
        # batch of unknown size (ActionHead.xla_dynamic_batch: the Beta) gets one graph per batch
        # size, traced first for the config's steps_per_iteration.
        signature = [features, actions, tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.float32)]
        mask_spec = policy.mask_spec()
        if mask_spec is not None:
            signature.append(mask_spec)
        # Nor with a recurrent cell: XLA cannot compile the double backward through the time loop's
        # TensorArray, and ran a slice-update loop ~20× slower than TensorFlow's own while loop does
        # (measured: LSTM of 8 units, 2 × 128 steps, 6 s against 0.27 s).
        xla = policy.trunk is None and not policy.recurrent if xla is None else xla  # explicit: benchmarks/hvp.py
        if xla and not policy.head.xla_dynamic_batch:
            self._signature = [_with_batch(spec, config) for spec in signature]
            self._step = tf.function(self._step_graph, jit_compile=True, autograph=False)
        else:
            self._signature = signature
            self._step = tf.function(self._step_graph, input_signature=signature, jit_compile=xla, autograph=False)

    def __call__(self, features: Any, actions: np.ndarray | tf.Tensor, advantages: np.ndarray | tf.Tensor,
                 max_kl: float | None = None, masks: np.ndarray | tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        if (masks is None) == self.policy.masked:
            raise ValueError("a masked policy's update takes the batch's action masks, another's none: "
                             f"the policy is {'' if self.policy.masked else 'not '}masked")
        inputs = (features, actions, advantages) + (() if masks is None else (masks,))
        specs = tuple(self._signature[:3]) + tuple(self._signature[4:])
        converted = tf.nest.map_structure(lambda value, spec: tf.convert_to_tensor(value, spec.dtype), inputs, specs)
        return self._step(*converted[:3], tf.constant(self.config.max_kl if max_kl is None else max_kl, tf.float32),
                          *converted[3:])

    def trace(self) -> None:
        """Build the graph now (a no-op once built); see :func:`trace_in_turn`."""
        self._step.get_concrete_function(*self._signature)

    def _step_graph(self, features: Any, actions: tf.Tensor, advantages: tf.Tensor,
                    max_kl: tf.Tensor, masks: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        cfg, policy = self.config, self.policy
        variables = policy.trainable_parameters()
        old = policy.frozen_distribution(features, masks)
        old_log_prob = tf.stop_gradient(old.log_prob(actions))

        def surrogate_kl_entropy() -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            """Surrogate advantage, mean KL(old ‖ new) and mean entropy, from one forward pass."""
            new = policy.distribution(features, masks)
            entropy = tf.reduce_mean(new.entropy())
            ratio = tf.exp(new.log_prob(actions) - old_log_prob)
            surrogate = tf.reduce_mean(ratio * advantages) + cfg.entropy_coef * entropy
            return surrogate, tf.reduce_mean(kl_divergence(old, new)), entropy

        curvature = self.curvature_product(tf.nest.map_structure(lambda x: x[::self.fisher_stride], features),
                                           None if masks is None else masks[::self.fisher_stride])

        def damped_curvature(vector: tf.Tensor) -> tf.Tensor:
            return curvature(vector) + cfg.cg_damping * vector

        old_params = trust_region.get_flat(variables)
        old_surrogate = surrogate_kl_entropy()[0]
        gradient = trust_region.flat_gradient(lambda: surrogate_kl_entropy()[0], variables)
        direction, cg_residual = trust_region.conjugate_gradient_with_residual(
            damped_curvature, gradient, cfg.cg_iters)
        curvature_direction = damped_curvature(direction)
        full_step, scale = trust_region.boundary_step(direction, curvature_direction, max_kl)
        if cfg.algorithm == "npg":
            trust_region.set_flat(variables, old_params + full_step)
            surrogate, kl, entropy = surrogate_kl_entropy()
            full_step_surrogate, full_step_kl = surrogate, kl
            accepted, steps = tf.constant(True), tf.constant(0, tf.int32)
        else:
            search = trust_region.backtracking_line_search(
                variables, old_params, full_step, lambda: surrogate_kl_entropy()[:2], old_surrogate,
                max_kl, cfg.line_search_coef, cfg.line_search_max_steps)
            surrogate, kl, entropy = surrogate_kl_entropy()
            full_step_surrogate, full_step_kl = search.full_step_surrogate, search.full_step_kl
            accepted, steps = search.accepted, search.steps
        # ½ sᵀHs of the undamped H: (H + λI)x is at hand, so sᵀHs = β²·(xᵀ(H + λI)x − λ·xᵀx).
        x_hx = tf.tensordot(direction, curvature_direction, 1) - cfg.cg_damping * tf.tensordot(direction, direction, 1)
        kl_predicted = tf.where(scale > 0.0, 0.5 * tf.square(scale) * x_hx, 0.0)
        return {"kl": kl, "surrogate_gain": surrogate - old_surrogate, "line_search_steps": steps,
                "accepted": accepted, "entropy": entropy,
                "kl_predicted": kl_predicted, "kl_full_step": full_step_kl,
                "kl_ratio": _ratio(full_step_kl, kl_predicted),
                "surrogate_predicted": tf.tensordot(gradient, full_step, 1),
                "surrogate_full_step": full_step_surrogate - old_surrogate, "cg_residual": cg_residual}

    def curvature_product(self, features: Any, masks: tf.Tensor | None = None) -> Matvec:
        """v [P] ↦ H·v [P], H the Hessian of the mean KL(π_old ‖ π_θ) over model inputs ``features`` at
        the current θ (π_old frozen there; both masked by ``masks`` [B, M] when given), by
        ``config.hvp_method`` (all three agree at θ_old)."""
        policy = self.policy
        variables = policy.trainable_parameters()
        old = policy.frozen_distribution(features, masks)
        if self.config.curvature_method == "gauss_newton":
            def kl_of_parameters(parameters: Sequence[tf.Tensor]) -> tf.Tensor:
                return tf.reduce_mean(kl_divergence(old, policy.head.distribution(parameters)))

            return lambda vector: trust_region.gauss_newton_vector_product(
                lambda: policy.distribution_parameters(features, masks), kl_of_parameters, variables, vector)

        def mean_kl() -> tf.Tensor:
            return tf.reduce_mean(kl_divergence(old, policy.distribution(features, masks)))

        product = {"forward_over_backward": trust_region.hessian_vector_product,
                   "double_backward": trust_region.double_backward_hessian_vector_product}[self.config.curvature_method]
        return lambda vector: product(mean_kl, variables, vector)


def _with_batch(spec: Any, config: TRPOConfig) -> Any:
    """``spec`` [None, ...] (or a nest of them) with its batch dimension set to ``config.steps_per_iteration``;
    a scalar spec stays as it is; segments (a dict) get [T·N, ...], starts [T, N] and states [N, S]."""
    if isinstance(spec, dict):
        return rnn.sequence_inputs(_with_batch(spec["inputs"], config),
                                   tf.TensorSpec([config.steps_per_env, config.n_envs], tf.bool),
                                   tf.TensorSpec([config.n_envs] + spec["state"].shape.as_list()[1:], tf.float32))
    if not isinstance(spec, tf.TensorSpec):
        return tf.nest.map_structure(lambda part: _with_batch(part, config), spec)
    size = config.steps_per_iteration
    return spec if spec.shape.rank == 0 else tf.TensorSpec([size] + spec.shape.as_list()[1:], spec.dtype, spec.name)


def _ratio(numerator: tf.Tensor, denominator: tf.Tensor) -> tf.Tensor:
    """numerator / denominator for scalars; NaN when the denominator is not positive (no step to compare)."""
    positive = denominator > 0.0
    return tf.where(positive, numerator / tf.where(positive, denominator, 1.0), float("nan"))


class ValueFit:
    """Adam(``config.value_lr``, or what :meth:`set_learning_rate` sets) on the squared error of
    ``value`` [B, 1] to the λ-returns.

    ``fit(features, returns [B], order [M, b])`` takes one Adam step per row of ``order``
    (indices into the batch, see :meth:`minibatch_order`) and returns the mean minibatch loss;
    ``predict(features)`` gives V [B]. Both are compiled once. ``features`` are model inputs:
    ``inputs`` gives their TensorSpec, or D for normalized features [B, D] alone.
    """

    def __init__(self, value: keras.Model, inputs: int | Any, config: TRPOConfig):
        self.value = value
        self.config = config
        self.optimizer = keras.optimizers.Adam(config.value_lr)
        self.optimizer.build(value.trainable_variables)
        features = tf.TensorSpec([None, inputs], tf.float32) if isinstance(inputs, int) else inputs
        vector = tf.TensorSpec([None], tf.float32)
        # XLA fuses the small ops of an MLP's minibatch loop; with a CNN (model inputs with frames: a
        # tuple) its CPU convolutions made the fit several times slower (measured on MinAtar's small CNN),
        # so a CNN's fit runs without it.
        self._fit = tf.function(self._fit_graph, input_signature=[
            features, vector, tf.TensorSpec([None, None], tf.int32)],
            jit_compile=not isinstance(features, tuple), autograph=False)
        self._predict = tf.function(lambda f: self.value(f)[:, 0], input_signature=[features], autograph=False)

    def __call__(self, features: Any, returns: np.ndarray | tf.Tensor,
                 order: np.ndarray | tf.Tensor) -> tf.Tensor:
        return self._fit(features, returns, order)

    def trace(self) -> None:
        """Build the graph now (a no-op once built); see :func:`trace_in_turn`."""
        self._fit.get_concrete_function()

    def set_learning_rate(self, learning_rate: float) -> None:
        """Adam's step size ``learning_rate`` from the next fit on (a variable the compiled fit reads: no retracing)."""
        self.optimizer.learning_rate.assign(learning_rate)

    def predict(self, features: Any) -> np.ndarray:
        """V(s) [B] at model inputs (normalized features [B, D], with frames for a CNN)."""
        return self._predict(features).numpy()

    def minibatch_order(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """[value_epochs · ⌊size / b⌋, b] shuffled indices, b = min(value_batch_size, size).

        Each epoch is a fresh permutation drawn from ``rng``; the size % b samples it leaves
        out differ per epoch.
        """
        batch_size = min(self.config.value_batch_size, size)
        per_epoch = size // batch_size
        epochs = [rng.permutation(size)[: per_epoch * batch_size] for _ in range(self.config.value_epochs)]
        if not epochs:
            return np.zeros((0, batch_size), dtype=np.int32)
        return np.concatenate(epochs).reshape(-1, batch_size).astype(np.int32)

    def _fit_graph(self, features: Any, returns: tf.Tensor, order: tf.Tensor) -> tf.Tensor:
        variables = self.value.trainable_variables
        minibatches = tf.shape(order)[0]

        def adam_step(row: tf.Tensor, total: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            index = order[row]
            with tf.GradientTape() as tape:
                prediction = self.value(tf.nest.map_structure(lambda x: tf.gather(x, index), features))[:, 0]
                loss = tf.reduce_mean(tf.square(prediction - tf.gather(returns, index)))
            self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return row + 1, total + loss

        _, total = tf.while_loop(lambda row, _: row < minibatches, adam_step, (tf.constant(0), tf.constant(0.0)))
        return total / tf.cast(tf.maximum(minibatches, 1), tf.float32)


class RecurrentValueFit(ValueFit):
    """:class:`ValueFit` for a :class:`~trpo_tf.policies.policy.RecurrentValue`: the squared error to the
    λ-returns over windows of the segments.

    The segments [T, N] are cut into windows of L = ``config.recurrent_sequence_length`` steps (T when
    None), W = (T / L)·N of them. Each fit first runs the value's cell over the whole segments (current
    weights, held constant) for the state entering each window; each Adam step then runs the cell over
    a minibatch of windows from those states (backpropagation through those L steps). Rows of ``order``
    (:meth:`minibatch_order`) index windows. :meth:`sequence` and :meth:`step` give the values the
    advantages need. ``inputs``: the TensorSpec of segments (the policy's
    :meth:`~trpo_tf.policies.policy.Policy.model_input_spec`).
    """

    def __init__(self, value: keras.Model, inputs: Any, config: TRPOConfig):
        self.value = value
        self.config = config
        self.window = config.recurrent_sequence_length or config.steps_per_env
        self.optimizer = keras.optimizers.Adam(config.value_lr)
        self.optimizer.build(value.trainable_variables)
        vector = tf.TensorSpec([None], tf.float32)
        cnn = isinstance(inputs["inputs"], tuple)
        self._fit = tf.function(self._fit_graph, input_signature=[inputs, vector, tf.TensorSpec([None, None], tf.int32)],
                                jit_compile=not cnn, autograph=False)
        self._sequence = tf.function(lambda f: tuple(value.sequence(f)), input_signature=[inputs], autograph=False)
        self._predict = tf.function(lambda f: value.sequence(f)[0][:, 0], input_signature=[inputs], autograph=False)
        state = tf.TensorSpec([None, value.state_size], tf.float32)
        self._step = tf.function(lambda x, h: tuple(value.step(x, h)), input_signature=[inputs["inputs"], state],
                                 autograph=False)

    def sequence(self, features: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Segments ``features`` → (V(s_t) [T·N], the value cell's states after each step [T, N, S])."""
        values, states = self._sequence(features)
        return np.asarray(values)[:, 0], np.asarray(states)

    def step(self, inputs: Any, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model inputs [B, ...] read from the value cell's states [B, S] → (V [B], new states [B, S])."""
        values, states = self._step(inputs, np.asarray(states, np.float32))
        return np.asarray(values)[:, 0], np.asarray(states)

    def minibatch_order(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """[value_epochs · ⌊W / w⌋, w] shuffled window indices, W = ``size`` / L windows, w = max(1,
        value_batch_size // L) windows per minibatch (at most W), each epoch a permutation drawn from ``rng``."""
        windows = size // self.window
        per_minibatch = min(max(1, self.config.value_batch_size // self.window), windows)
        per_epoch = windows // per_minibatch
        epochs = [rng.permutation(windows)[: per_epoch * per_minibatch] for _ in range(self.config.value_epochs)]
        if not epochs:
            return np.zeros((0, per_minibatch), dtype=np.int32)
        return np.concatenate(epochs).reshape(-1, per_minibatch).astype(np.int32)

    def _fit_graph(self, features: Any, returns: tf.Tensor, order: tf.Tensor) -> tf.Tensor:
        variables = self.value.trainable_variables
        starts = features["episode_starts"]
        steps, n_envs, length = tf.shape(starts)[0], tf.shape(starts)[1], self.window
        chunks = steps // length
        states = tf.stop_gradient(self.value.sequence(features)[1])  # [T, N, S]
        entering = tf.concat([features["state"][None], states[length - 1:-1:length]], 0)  # [T / L, N, S]
        entering = tf.reshape(entering, [chunks * n_envs, -1])

        def windows(x: tf.Tensor) -> tf.Tensor:
            """[T·N, ...] time-major → [W, L, ...], window k·N + n holding steps k·L ... (k + 1)·L − 1 of n."""
            rest = tf.shape(x)[1:]
            x = tf.reshape(x, tf.concat([[chunks, length, n_envs], rest], 0))
            x = tf.transpose(x, [0, 2, 1] + list(range(3, x.shape.rank)))
            return tf.reshape(x, tf.concat([[chunks * n_envs, length], rest], 0))

        inputs = tf.nest.map_structure(windows, features["inputs"])
        window_starts, window_returns = windows(tf.reshape(starts, [-1])), windows(returns)
        minibatches = tf.shape(order)[0]

        def adam_step(row: tf.Tensor, total: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            index = order[row]
            chosen = tf.nest.map_structure(lambda x: _time_major(tf.gather(x, index)), inputs)
            segments = rnn.sequence_inputs(chosen, tf.transpose(tf.gather(window_starts, index)),
                                           tf.gather(entering, index))
            target = _time_major(tf.gather(window_returns, index))
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(self.value.sequence(segments)[0][:, 0] - target))
            self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return row + 1, total + loss

        _, total = tf.while_loop(lambda row, _: row < minibatches, adam_step, (tf.constant(0), tf.constant(0.0)))
        return total / tf.cast(tf.maximum(minibatches, 1), tf.float32)


def _time_major(x: tf.Tensor) -> tf.Tensor:
    """Windows [w, L, ...] → [L·w, ...], time first (as segments are flattened)."""
    x = tf.transpose(x, [1, 0] + list(range(2, x.shape.rank)))
    return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))


def trace_in_turn(*steps: PolicyUpdate | ValueFit) -> None:
    """Trace ``steps`` one after another in this thread, before they first run side by side.

    Graph names number functions in the order they are traced and XLA's persistent compilation
    cache keys on those names: traced at once in two threads, they would be numbered
    differently from run to run, and every run would compile again.
    """
    for step in steps:
        step.trace()
