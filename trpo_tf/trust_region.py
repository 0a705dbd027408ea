"""Pure TensorFlow math of the TRPO trust-region step.

This module knows nothing about environments or Keras models. It works on a
list of plain ``tf.Variable`` objects (for a Keras 3 model pass
``[v.value for v in model.trainable_variables]``) and on *flat* float32
vectors of shape ``[P]``, where ``P`` is the total number of scalar
parameters in those variables.

Every function runs eagerly and inside ``tf.function`` (graph mode): loops are
``tf.while_loop`` and no value is ever pulled back to Python.

The step follows Schulman et al., "Trust Region Policy Optimization" (2015),
Appendix C: solve ``H x = g`` with conjugate gradient, where ``H`` is the
Hessian of the mean KL divergence (the Fisher matrix at the old parameters),
scale ``x`` so that the quadratic model of the KL equals ``max_kl``,
``beta = sqrt(2 * max_kl / (x^T H x))``, then backtrack along ``beta * x``
until the surrogate improves and the KL constraint holds.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import tensorflow as tf

__all__ = [
    "flatten",
    "unflatten",
    "get_flat",
    "set_flat",
    "flat_gradient",
    "hessian_vector_product",
    "double_backward_hessian_vector_product",
    "gauss_newton_vector_product",
    "conjugate_gradient",
    "conjugate_gradient_with_residual",
    "boundary_step",
    "scaled_step",
    "LineSearchResult",
    "backtracking_line_search",
]

_ZERO = tf.UnconnectedGradients.ZERO


def _sizes(like: Sequence[tf.Variable]) -> list[int]:
    """Static number of elements of each tensor in ``like`` (shapes must be fully known)."""
    sizes = []
    for t in like:
        n = t.shape.num_elements()
        if n is None:
            raise ValueError(f"shape of {t!r} is not fully defined: {t.shape}")
        sizes.append(int(n))
    return sizes


def flatten(tensors: Sequence[tf.Tensor]) -> tf.Tensor:
    """Concatenate tensors reshaped to 1-D.

    Args:
      tensors: tensors of arbitrary shapes (dense; ``tf.IndexedSlices`` are densified).

    Returns:
      float32 tensor of shape ``[P]``, ``P = sum(t.shape.num_elements())``.
    """
    parts = [tf.reshape(tf.cast(tf.convert_to_tensor(t), tf.float32), [-1]) for t in tensors]
    if not parts:
        return tf.zeros([0], tf.float32)
    return tf.concat(parts, axis=0)


def unflatten(flat: tf.Tensor, like: Sequence[tf.Variable]) -> list[tf.Tensor]:
    """Split a flat vector into tensors shaped like ``like`` (inverse of :func:`flatten`).

    Args:
      flat: shape ``[P]``.
      like: variables/tensors whose shapes define the split (static shapes).

    Returns:
      list of tensors, the i-th of shape ``like[i].shape``.
    """
    flat = tf.convert_to_tensor(flat, tf.float32)
    sizes = _sizes(like)
    pieces = tf.split(flat, sizes, axis=0) if sizes else []
    return [tf.reshape(p, t.shape) for p, t in zip(pieces, like)]


def get_flat(variables: Sequence[tf.Variable]) -> tf.Tensor:
    """Current values of ``variables`` as one vector of shape ``[P]``."""
    return flatten([tf.convert_to_tensor(v) for v in variables])


def set_flat(variables: Sequence[tf.Variable], flat: tf.Tensor) -> None:
    """Assign ``variables`` from a flat vector of shape ``[P]``."""
    for v, value in zip(variables, unflatten(flat, variables)):
        v.assign(tf.cast(value, v.dtype))


def flat_gradient(loss_fn: Callable[[], tf.Tensor], variables: Sequence[tf.Variable]) -> tf.Tensor:
    """Gradient of the scalar ``loss_fn()`` w.r.t. ``variables``.

    Variables the loss does not depend on get zero gradient.

    Returns:
      shape ``[P]``.
    """
    with tf.GradientTape() as tape:
        tape.watch(variables)
        loss = loss_fn()
    grads = tape.gradient(loss, variables, unconnected_gradients=_ZERO)
    return flatten(grads)


def hessian_vector_product(
    kl_fn: Callable[[], tf.Tensor], variables: Sequence[tf.Variable], vector: tf.Tensor
) -> tf.Tensor:
    """``H @ vector`` with ``H`` the Hessian of the scalar ``kl_fn()``, forward-over-backward.

    The gradient of ``kl_fn()`` is taken with a ``tf.GradientTape`` inside a
    ``tf.autodiff.ForwardAccumulator`` whose tangents are ``vector``; the
    forward-mode derivative (JVP) of that gradient is ``H v``. No damping.

    Args:
      kl_fn: zero-argument callable returning a scalar that reads ``variables``.
      variables: list of plain ``tf.Variable``.
      vector: shape ``[P]``.

    Returns:
      shape ``[P]``.
    """
    tangents = unflatten(vector, variables)
    with tf.autodiff.ForwardAccumulator(primals=variables, tangents=tangents) as acc:
        with tf.GradientTape() as tape:
            tape.watch(variables)
            kl = kl_fn()
        grads = tape.gradient(kl, variables, unconnected_gradients=_ZERO)
        grads = [tf.convert_to_tensor(g) for g in grads]
    return flatten(acc.jvp(grads, unconnected_gradients=_ZERO))


def double_backward_hessian_vector_product(
    kl_fn: Callable[[], tf.Tensor], variables: Sequence[tf.Variable], vector: tf.Tensor
) -> tf.Tensor:
    """``H @ vector`` as the gradient of ``grad(kl) . vector`` (reverse-over-reverse reference).

    Args:
      kl_fn: zero-argument callable returning a scalar that reads ``variables``.
      variables: list of plain ``tf.Variable``.
      vector: shape ``[P]``.

    Returns:
      shape ``[P]``.
    """
    vector = tf.convert_to_tensor(vector, tf.float32)
    with tf.GradientTape() as outer:
        outer.watch(variables)
        with tf.GradientTape() as inner:
            inner.watch(variables)
            kl = kl_fn()
        grads = inner.gradient(kl, variables, unconnected_gradients=_ZERO)
        grad_dot_v = tf.reduce_sum(flatten(grads) * tf.stop_gradient(vector))
    return flatten(outer.gradient(grad_dot_v, variables, unconnected_gradients=_ZERO))


def gauss_newton_vector_product(
    outputs_fn: Callable[[], Sequence[tf.Tensor]],
    kl_of_outputs: Callable[[Sequence[tf.Tensor]], tf.Tensor],
    variables: Sequence[tf.Variable],
    vector: tf.Tensor,
) -> tf.Tensor:
    """``Jᵀ M J @ vector``: the Fisher-vector product in Gauss–Newton form.

    ``outputs_fn()`` gives the distribution's parameters η(θ) (e.g. ``[mean, log_std]`` or
    ``[logits]``); ``kl_of_outputs(η)`` the scalar mean KL(old ‖ π_η). With J = ∂η/∂θ and
    M = ∇²_η KL, a JVP through the network gives J v, a Hessian-vector product in the small
    output space gives M J v, and a VJP back gives Jᵀ M J v (Martens, 2014, sec. 9; Schulman
    et al., 2015, appendix C.1). At θ = θ_old, where ∇_η KL = 0, this equals the Hessian of
    the mean KL — the point where TRPO's conjugate gradient is solved — for one forward and
    one backward pass of the network instead of forward-over-backward's two of each.

    Args:
      outputs_fn: zero-argument callable returning the distribution's parameters η, reading ``variables``.
      kl_of_outputs: maps parameters η to the scalar mean KL(old ‖ π_η).
      variables: list of plain ``tf.Variable``.
      vector: v, shape ``[P]``.

    Returns:
      shape ``[P]``.
    """
    tangents = unflatten(vector, variables)
    with tf.GradientTape() as backward:
        backward.watch(variables)
        with tf.autodiff.ForwardAccumulator(primals=variables, tangents=tangents) as forward:
            outputs = list(outputs_fn())
        output_tangents = [forward.jvp(o, unconnected_gradients=_ZERO) for o in outputs]
    at = [tf.stop_gradient(o) for o in outputs]
    with tf.GradientTape() as outer:
        outer.watch(at)
        with tf.GradientTape() as inner:
            inner.watch(at)
            kl = kl_of_outputs(at)
        grads = inner.gradient(kl, at, unconnected_gradients=_ZERO)
        grad_dot_tangent = tf.add_n([tf.reduce_sum(g * tf.stop_gradient(t))
                                     for g, t in zip(grads, output_tangents)])
    curvature = outer.gradient(grad_dot_tangent, at, unconnected_gradients=_ZERO)
    return flatten(backward.gradient(outputs, variables, output_gradients=curvature,
                                     unconnected_gradients=_ZERO))


def conjugate_gradient(
    matvec: Callable[[tf.Tensor], tf.Tensor],
    b: tf.Tensor,
    max_iters: int,
    residual_tol: float = 1e-10,
) -> tf.Tensor:
    """Solve ``A x = b`` for symmetric positive-definite ``A`` by conjugate gradient from ``x = 0``.

    Standard CG (Nocedal & Wright, Algorithm 5.2). Runs at most ``max_iters``
    iterations and stops early once ``r . r < residual_tol``. Divisions are
    guarded so ``b == 0`` (or a degenerate ``A``) never yields NaN; ``b == 0``
    returns zeros.

    Args:
      matvec: maps a ``[P]`` vector ``v`` to ``A v`` (``[P]``).
      b: right-hand side, shape ``[P]``.
      max_iters: maximum number of iterations (= calls of ``matvec``).
      residual_tol: threshold on the squared residual norm.

    Returns:
      approximate solution ``x``, shape ``[P]``.
    """
    return conjugate_gradient_with_residual(matvec, b, max_iters, residual_tol)[0]


def conjugate_gradient_with_residual(
    matvec: Callable[[tf.Tensor], tf.Tensor],
    b: tf.Tensor,
    max_iters: int,
    residual_tol: float = 1e-10,
) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`conjugate_gradient`, also returning the relative residual ``‖A x − b‖ / ‖b‖``.

    The residual is the one CG updates at every iteration (``r ← r − α A p``), so it costs
    no extra ``matvec``; in exact arithmetic it equals ``b − A x``. It is 0 for ``b == 0``.

    Args:
      matvec: maps a ``[P]`` vector ``v`` to ``A v`` (``[P]``).
      b: right-hand side, shape ``[P]``.
      max_iters: maximum number of iterations (= calls of ``matvec``).
      residual_tol: threshold on the squared residual norm.

    Returns:
      ``(x, residual)``: shape ``[P]`` and a scalar.
    """
    b = tf.convert_to_tensor(b, tf.float32)
    tol = tf.constant(residual_tol, tf.float32)
    max_iters_t = tf.convert_to_tensor(max_iters, tf.int32)
    x0 = tf.zeros_like(b)
    rdotr0 = tf.tensordot(b, b, 1)

    def cond(i: tf.Tensor, x: tf.Tensor, r: tf.Tensor, p: tf.Tensor, rdotr: tf.Tensor) -> tf.Tensor:
        return tf.logical_and(i < max_iters_t, rdotr >= tol)

    def body(i: tf.Tensor, x: tf.Tensor, r: tf.Tensor, p: tf.Tensor, rdotr: tf.Tensor) -> tuple:
        ap = tf.reshape(tf.cast(matvec(p), tf.float32), tf.shape(b))
        alpha = tf.math.divide_no_nan(rdotr, tf.tensordot(p, ap, 1))
        x = x + alpha * p
        r = r - alpha * ap
        new_rdotr = tf.tensordot(r, r, 1)
        beta = tf.math.divide_no_nan(new_rdotr, rdotr)
        p = r + beta * p
        return i + 1, x, r, p, new_rdotr

    _, x, _, _, rdotr = tf.while_loop(
        cond,
        body,
        (tf.constant(0, tf.int32), x0, b, b, rdotr0),
    )
    return x, tf.sqrt(tf.math.divide_no_nan(rdotr, rdotr0))


def boundary_step(
    direction: tf.Tensor, curvature_direction: tf.Tensor, max_kl: float | tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """TRPO full step ``s = beta * x``, ``beta = sqrt(2 * max_kl / (x^T A x))``, given ``A x``.

    With ``A`` the (damped) KL Hessian, the quadratic KL model ``0.5 * s^T A s`` of the
    returned step equals ``max_kl``. If ``x^T A x`` is not positive and finite (or the step
    is not finite), returns a zero step and ``beta = 0`` instead of NaN/inf.

    Args:
      direction: ``x``, shape ``[P]``.
      curvature_direction: ``A x``, shape ``[P]``.
      max_kl: trust-region size (scalar).

    Returns:
      ``(step, beta)``: shape ``[P]`` and a scalar.
    """
    x = tf.convert_to_tensor(direction, tf.float32)
    shs = tf.tensordot(x, tf.reshape(tf.cast(curvature_direction, tf.float32), tf.shape(x)), 1)
    curvature_ok = tf.logical_and(tf.math.is_finite(shs), shs > 0.0)
    safe_shs = tf.where(curvature_ok, shs, tf.ones_like(shs))
    scale = tf.sqrt(2.0 * tf.cast(max_kl, tf.float32) / safe_shs)
    step = scale * x
    ok = tf.logical_and(curvature_ok, tf.reduce_all(tf.math.is_finite(step)))
    return tf.where(ok, step, tf.zeros_like(step)), tf.where(ok, scale, tf.zeros_like(scale))


def scaled_step(
    matvec: Callable[[tf.Tensor], tf.Tensor], direction: tf.Tensor, max_kl: float | tf.Tensor
) -> tf.Tensor:
    """TRPO full step ``sqrt(2 * max_kl / (x^T A x)) * x`` for ``x = direction`` (see :func:`boundary_step`).

    Args:
      matvec: maps ``[P]`` to ``A v`` (``[P]``), the same one used in CG.
      direction: ``x``, shape ``[P]``.
      max_kl: trust-region size (scalar).

    Returns:
      shape ``[P]``; zeros when the curvature along ``x`` is not positive and finite.
    """
    x = tf.convert_to_tensor(direction, tf.float32)
    return boundary_step(x, matvec(x), max_kl)[0]


class LineSearchResult(NamedTuple):
    """What :func:`backtracking_line_search` returns (all scalars).

    ``accepted`` (tf.bool), ``steps`` (tf.int32, candidate points evaluated), and the
    surrogate and KL that ``evaluate()`` gave at the first candidate, the full step
    (NaN when ``max_steps`` is 0).
    """

    accepted: tf.Tensor
    steps: tf.Tensor
    full_step_surrogate: tf.Tensor
    full_step_kl: tf.Tensor


def backtracking_line_search(
    variables: Sequence[tf.Variable],
    old_params: tf.Tensor,
    full_step: tf.Tensor,
    evaluate: Callable[[], tuple[tf.Tensor, tf.Tensor]],
    old_surrogate: tf.Tensor,
    max_kl: float | tf.Tensor,
    coef: float,
    max_steps: int,
) -> LineSearchResult:
    """Backtrack along ``full_step`` until the surrogate improves within the trust region.

    For ``j = 0 .. max_steps - 1``: set the variables to
    ``old_params + coef**j * full_step``, call ``evaluate()`` (which reads the
    variables) to get ``(surrogate, kl)``, and accept the first ``j`` where
    both are finite, ``kl <= max_kl`` and ``surrogate > old_surrogate``.
    On acceptance the variables keep that point; otherwise they are restored
    to ``old_params``.

    Args:
      variables: list of plain ``tf.Variable``.
      old_params: parameters before the step, shape ``[P]``.
      full_step: shape ``[P]``.
      evaluate: zero-argument callable returning scalar ``(surrogate, kl)``
        for the current variable values (surrogate is maximised).
      old_surrogate: scalar surrogate at ``old_params``.
      max_kl: KL limit (scalar).
      coef: shrink factor per step, e.g. 0.5.
      max_steps: maximum number of candidate points.

    Returns:
      :class:`LineSearchResult`: ``accepted``, ``steps`` and what ``evaluate()`` gave at the
      full step (``j = 0``), ``full_step_surrogate`` and ``full_step_kl``.
    """
    old_params = tf.convert_to_tensor(old_params, tf.float32)
    full_step = tf.convert_to_tensor(full_step, tf.float32)
    old_surrogate = tf.reshape(tf.cast(old_surrogate, tf.float32), [])
    max_kl_t = tf.cast(max_kl, tf.float32)
    coef_t = tf.cast(coef, tf.float32)
    max_steps_t = tf.convert_to_tensor(max_steps, tf.int32)

    def cond(j: tf.Tensor, accepted: tf.Tensor, *full: tf.Tensor) -> tf.Tensor:
        return tf.logical_and(tf.logical_not(accepted), j < max_steps_t)

    def body(j: tf.Tensor, accepted: tf.Tensor, full_surrogate: tf.Tensor,
             full_kl: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        fraction = tf.pow(coef_t, tf.cast(j, tf.float32))
        set_flat(variables, old_params + fraction * full_step)
        surrogate, kl = evaluate()
        surrogate = tf.reshape(tf.cast(surrogate, tf.float32), [])
        kl = tf.reshape(tf.cast(kl, tf.float32), [])
        ok = tf.reduce_all(
            tf.stack(
                [
                    tf.math.is_finite(surrogate),
                    tf.math.is_finite(kl),
                    kl <= max_kl_t,
                    surrogate > old_surrogate,
                ]
            )
        )
        first = tf.equal(j, 0)
        return j + 1, ok, tf.where(first, surrogate, full_surrogate), tf.where(first, kl, full_kl)

    nan = tf.constant(float("nan"), tf.float32)
    steps, accepted, full_surrogate, full_kl = tf.while_loop(
        cond, body, (tf.constant(0, tf.int32), tf.constant(False), nan, nan)
    )

    def keep() -> tf.Tensor:
        return tf.constant(True)

    def restore() -> tf.Tensor:
        set_flat(variables, old_params)
        return tf.constant(False)

    accepted = tf.cond(accepted, keep, restore)
    return LineSearchResult(accepted, steps, full_surrogate, full_kl)
