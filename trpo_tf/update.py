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
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from trpo_tf import trust_region
from trpo_tf.config import TRPOConfig
from trpo_tf.policies import Policy, kl_divergence

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

    ``xla``: compile the step with XLA (None: whenever the policy has no CNN trunk; False is for
    benchmarks that time the step both ways).
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
        xla = policy.trunk is None if xla is None else xla  # an explicit choice: benchmarks/hvp.py
        if xla and not policy.head.xla_dynamic_batch:
            self._signature = [_with_batch(spec, config.steps_per_iteration) for spec in signature]
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


def _with_batch(spec: tf.TensorSpec, size: int) -> tf.TensorSpec:
    """``spec`` [None, ...] with its batch dimension set to ``size``; a scalar spec stays as it is."""
    return spec if spec.shape.rank == 0 else tf.TensorSpec([size] + spec.shape.as_list()[1:], spec.dtype)


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


def trace_in_turn(*steps: PolicyUpdate | ValueFit) -> None:
    """Trace ``steps`` one after another in this thread, before they first run side by side.

    Graph names number functions in the order they are traced and XLA's persistent compilation
    cache keys on those names: traced at once in two threads, they would be numbered
    differently from run to run, and every run would compile again.
    """
    for step in steps:
        step.trace()
