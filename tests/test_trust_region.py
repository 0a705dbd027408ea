"""Tests of trpo_tf.trust_region against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf


from trpo_tf import trust_region as tr


# ----------------------------------------------------------------------------- helpers


def _random_spd(rng: np.random.Generator, n: int, low: float = 1.0, high: float = 10.0) -> np.ndarray:
    """Random symmetric positive-definite matrix with eigenvalues in [low, high]."""
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eig = rng.uniform(low, high, size=n)
    return ((q * eig) @ q.T).astype(np.float32)


def _matvec_of(a: np.ndarray):
    a_t = tf.constant(a, tf.float32)
    return lambda v: tf.linalg.matvec(a_t, v)


# ----------------------------------------------------------------------------- flatten & co


def test_flatten_unflatten_get_set_roundtrip():
    variables = [
        tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3)),
        tf.Variable(np.array([7.0], np.float32)),
        tf.Variable(np.arange(8, dtype=np.float32).reshape(2, 2, 2) + 10.0),
    ]
    flat = tr.get_flat(variables)
    expected = np.concatenate([v.numpy().ravel() for v in variables])
    np.testing.assert_array_equal(flat.numpy(), expected)
    assert flat.shape == (15,)

    parts = tr.unflatten(flat, variables)
    for p, v in zip(parts, variables):
        assert p.shape == v.shape
        np.testing.assert_array_equal(p.numpy(), v.numpy())

    new = np.linspace(-1.0, 1.0, 15).astype(np.float32)
    tr.set_flat(variables, tf.constant(new))
    np.testing.assert_array_equal(tr.get_flat(variables).numpy(), new)
    np.testing.assert_array_equal(variables[0].numpy(), new[:6].reshape(2, 3))


def test_flat_gradient_matches_analytic_and_zero_for_unused():
    w = tf.Variable([1.0, -2.0, 3.0])
    m = tf.Variable([[0.5, 1.0], [2.0, -1.0]])
    unused = tf.Variable([4.0, 5.0])
    variables = [w, m, unused]

    def loss():
        return tf.reduce_sum(w**2) + tf.reduce_sum(tf.sin(m))

    g = tr.flat_gradient(loss, variables).numpy()
    expected = np.concatenate([2.0 * w.numpy(), np.cos(m.numpy()).ravel(), np.zeros(2)])
    np.testing.assert_allclose(g, expected, rtol=1e-6, atol=1e-6)
    g_graph = tf.function(lambda: tr.flat_gradient(loss, variables))().numpy()
    np.testing.assert_allclose(g_graph, expected, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- conjugate gradient


@pytest.mark.parametrize("n", [5, 12, 20, 30])
def test_conjugate_gradient_matches_linalg_solve(n):
    rng = np.random.default_rng(n)
    a = _random_spd(rng, n)
    b = rng.standard_normal(n).astype(np.float32)
    expected = np.linalg.solve(a.astype(np.float64), b.astype(np.float64))
    matvec = _matvec_of(a)

    x_eager = tr.conjugate_gradient(matvec, tf.constant(b), max_iters=n).numpy()
    np.testing.assert_allclose(x_eager, expected, rtol=1e-3, atol=1e-4)

    cg_graph = tf.function(lambda rhs: tr.conjugate_gradient(matvec, rhs, max_iters=n))
    x_graph = cg_graph(tf.constant(b)).numpy()
    np.testing.assert_allclose(x_graph, expected, rtol=1e-3, atol=1e-4)


def test_conjugate_gradient_respects_max_iters():
    # One CG iteration from x=0 is the exact line minimiser along b: x = (b.b / b.A.b) b.
    rng = np.random.default_rng(0)
    n = 10
    a = _random_spd(rng, n)
    b = rng.standard_normal(n).astype(np.float32)
    x1 = tr.conjugate_gradient(_matvec_of(a), tf.constant(b), max_iters=1).numpy()
    b64, a64 = b.astype(np.float64), a.astype(np.float64)
    expected = (b64 @ b64) / (b64 @ a64 @ b64) * b64
    np.testing.assert_allclose(x1, expected, rtol=1e-5, atol=1e-6)

    # Count matvec calls eagerly: early stop on a trivially solvable system (A = 2 I).
    calls = []

    def counting_matvec(v):
        calls.append(1)
        return 2.0 * v

    x = tr.conjugate_gradient(counting_matvec, tf.constant(b), max_iters=50).numpy()
    np.testing.assert_allclose(x, b / 2.0, rtol=1e-6, atol=1e-6)
    assert len(calls) == 1


def test_conjugate_gradient_zero_rhs_gives_zeros():
    rng = np.random.default_rng(1)
    a = _random_spd(rng, 7)
    matvec = _matvec_of(a)
    zero = tf.zeros([7])
    for residual_tol in (1e-10, 0.0):
        x = tr.conjugate_gradient(matvec, zero, max_iters=7, residual_tol=residual_tol).numpy()
        assert np.all(np.isfinite(x))
        np.testing.assert_array_equal(x, np.zeros(7, np.float32))
        x_graph = tf.function(
            lambda rhs, tol=residual_tol: tr.conjugate_gradient(matvec, rhs, 7, tol)
        )(zero).numpy()
        np.testing.assert_array_equal(x_graph, np.zeros(7, np.float32))


@pytest.mark.parametrize("use_function", [False, True], ids=["eager", "tf_function"])
@pytest.mark.parametrize("iters", [1, 3, 12])
def test_conjugate_gradient_residual_is_the_relative_residual_of_its_solution(use_function, iters):
    rng = np.random.default_rng(7)
    a = _random_spd(rng, 12, low=0.5, high=50.0)
    b = rng.standard_normal(12).astype(np.float32)
    solve = lambda rhs: tr.conjugate_gradient_with_residual(_matvec_of(a), rhs, iters)  # noqa: E731
    x, residual = (tf.function(solve) if use_function else solve)(tf.constant(b))
    a64, b64, x64 = a.astype(np.float64), b.astype(np.float64), x.numpy().astype(np.float64)
    expected = np.linalg.norm(a64 @ x64 - b64) / np.linalg.norm(b64)  # ‖Ax − b‖ / ‖b‖ in NumPy
    assert float(residual) == pytest.approx(expected, rel=1e-3, abs=1e-5)
    if iters < 12:
        assert expected > 1e-2  # unfinished: the residual is far from the exact solve's
    else:
        exact = np.linalg.solve(a64, b64)
        assert float(residual) < 1e-4 and np.linalg.norm(a64 @ exact - b64) / np.linalg.norm(b64) < 1e-12
        np.testing.assert_allclose(x64, exact, rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(x.numpy(), tr.conjugate_gradient(_matvec_of(a), tf.constant(b), iters).numpy())


def test_conjugate_gradient_residual_of_zero_rhs_is_zero():
    x, residual = tr.conjugate_gradient_with_residual(_matvec_of(_random_spd(np.random.default_rng(2), 4)),
                                                      tf.zeros([4]), 4)
    assert float(residual) == 0.0 and not np.any(x.numpy())


# ----------------------------------------------------------------------------- scaled step


def test_scaled_step_hits_kl_boundary():
    rng = np.random.default_rng(2)
    n = 9
    a = _random_spd(rng, n, 0.1, 5.0)
    matvec = _matvec_of(a)
    direction = rng.standard_normal(n).astype(np.float32)
    max_kl = 0.01
    for fn in (tr.scaled_step, tf.function(tr.scaled_step)):
        step = fn(matvec, tf.constant(direction), max_kl).numpy().astype(np.float64)
        quad = step @ a.astype(np.float64) @ step
        np.testing.assert_allclose(quad, 2.0 * max_kl, rtol=1e-5)
        # Same direction, positive multiple.
        ratio = step / direction
        np.testing.assert_allclose(ratio, np.full(n, ratio[0]), rtol=1e-5)
        assert ratio[0] > 0


@pytest.mark.parametrize(
    "matvec",
    [
        lambda v: -v,  # negative curvature
        lambda v: 0.0 * v,  # zero curvature
        lambda v: v * np.float32(np.nan),  # NaN curvature
        lambda v: v * np.float32(np.inf),  # infinite curvature
    ],
    ids=["negative", "zero", "nan", "inf"],
)
def test_scaled_step_degenerate_curvature_gives_zeros(matvec):
    direction = tf.constant([1.0, -2.0, 0.5])
    for fn in (tr.scaled_step, tf.function(tr.scaled_step)):
        step = fn(matvec, direction, 0.01).numpy()
        np.testing.assert_array_equal(step, np.zeros(3, np.float32))


def test_scaled_step_zero_direction_gives_zeros():
    step = tr.scaled_step(lambda v: 3.0 * v, tf.zeros([4]), 0.01).numpy()
    np.testing.assert_array_equal(step, np.zeros(4, np.float32))


# ----------------------------------------------------------------------------- Hessian-vector products


class _TinyPolicy:
    """Tiny Keras 3 MLP policy with a diagonal-Gaussian or Categorical head; owns 'old' constants."""

    def __init__(self, head: str, seed: int):
        import keras  # noqa: PLC0415
        import tensorflow_probability as tfp  # noqa: PLC0415

        self.tfd = tfp.distributions
        self.head = head
        keras.utils.set_random_seed(seed)
        n_out = 2 if head == "gaussian" else 3
        self.model = keras.Sequential(
            [
                keras.Input((3,)),
                keras.layers.Dense(4, activation="tanh"),
                keras.layers.Dense(n_out),
            ]
        )
        rng = np.random.default_rng(seed)
        self.obs = tf.constant(rng.standard_normal((16, 3)).astype(np.float32))
        self.variables = [v.value for v in self.model.trainable_variables]
        if head == "gaussian":
            self.log_std = tf.Variable(np.array([-0.3, 0.2], np.float32), name="log_std")
            self.variables.append(self.log_std)
        # "old" distribution parameters: computed once, then held constant.
        self.old_params = tf.constant(self._dist_params(self.variables))
        self.start = tr.get_flat(self.variables)

    def _dist_params(self, values):
        """Distribution parameters as one [N, k] or ([N, k], [k]) structure from parameter tensors."""
        n_model = len(self.model.trainable_variables)
        out, _ = self.model.stateless_call(list(values[:n_model]), [], self.obs)
        if self.head == "gaussian":
            log_std = values[n_model]
            return tf.concat([out, tf.broadcast_to(log_std, tf.shape(out))], axis=1)
        return out

    def _dist(self, params):
        if self.head == "gaussian":
            mean, log_std = tf.split(params, 2, axis=1)
            return self.tfd.Independent(self.tfd.Normal(mean, tf.exp(log_std)), 1)
        return self.tfd.Categorical(logits=params)

    def kl_of_params(self, values) -> tf.Tensor:
        """Mean KL(old || new) as a pure function of parameter tensors (independent path)."""
        new = self._dist(self._dist_params(values))
        return tf.reduce_mean(self.tfd.kl_divergence(self._dist(self.old_params), new))

    def kl_fn(self) -> tf.Tensor:
        """Mean KL(old || new) reading the live variables through the Keras model call."""
        out = self.model(self.obs)
        if self.head == "gaussian":
            params = tf.concat([out, tf.broadcast_to(self.log_std, tf.shape(out))], axis=1)
        else:
            params = out
        new = self._dist(params)
        return tf.reduce_mean(self.tfd.kl_divergence(self._dist(self.old_params), new))

    def explicit_hessian(self) -> np.ndarray:
        """Full P x P Hessian of the mean KL at the current variable values via nested-tape jacobian."""
        theta = tf.constant(tr.get_flat(self.variables))
        with tf.GradientTape() as outer:
            outer.watch(theta)
            with tf.GradientTape() as inner:
                inner.watch(theta)
                kl = self.kl_of_params(tr.unflatten(theta, self.variables))
            grad = inner.gradient(kl, theta)
        return outer.jacobian(grad, theta).numpy()

    def perturb(self, scale: float, seed: int) -> None:
        rng = np.random.default_rng(seed)
        noise = scale * rng.standard_normal(self.start.shape[0]).astype(np.float32)
        tr.set_flat(self.variables, self.start + noise)


@pytest.mark.parametrize("head", ["gaussian", "categorical"])
def test_hessian_vector_product_matches_explicit_hessian(head):
    policy = _TinyPolicy(head, seed=3)
    n_params = int(policy.start.shape[0])
    assert n_params == 3 * 4 + 4 + 4 * (2 if head == "gaussian" else 3) + (2 if head == "gaussian" else 3) + (
        2 if head == "gaussian" else 0
    )
    # The live Keras call and the stateless path agree, and KL is 0 at the old parameters.
    np.testing.assert_allclose(policy.kl_fn().numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(policy.kl_of_params(policy.variables).numpy(), 0.0, atol=1e-6)

    rng = np.random.default_rng(4)
    hvp_graph = tf.function(lambda v: tr.hessian_vector_product(policy.kl_fn, policy.variables, v))

    for point in ("old", "perturbed"):
        if point == "perturbed":
            policy.perturb(0.3, seed=5)
            kl_now = policy.kl_fn().numpy()
            assert kl_now > 1e-3
            np.testing.assert_allclose(
                policy.kl_of_params(policy.variables).numpy(), kl_now, rtol=1e-5, atol=1e-7
            )
        hessian = policy.explicit_hessian()
        assert hessian.shape == (n_params, n_params)
        scale = np.abs(hessian).max()
        np.testing.assert_allclose(hessian, hessian.T, atol=1e-5 * max(scale, 1.0))
        if point == "old":
            eig = np.linalg.eigvalsh(hessian.astype(np.float64))
            assert eig.min() >= -1e-5 * max(scale, 1.0)
            assert eig.max() > 0

        for _ in range(3):
            v = rng.standard_normal(n_params).astype(np.float32)
            expected = hessian.astype(np.float64) @ v.astype(np.float64)
            fob = tr.hessian_vector_product(policy.kl_fn, policy.variables, tf.constant(v)).numpy()
            dbl = tr.double_backward_hessian_vector_product(
                policy.kl_fn, policy.variables, tf.constant(v)
            ).numpy()
            fob_graph = hvp_graph(tf.constant(v)).numpy()
            np.testing.assert_allclose(fob, expected, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(dbl, expected, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(fob_graph, expected, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(fob, dbl, rtol=1e-5, atol=1e-5)


def test_hessian_vector_product_on_quadratic_with_unused_variable():
    rng = np.random.default_rng(6)
    a = _random_spd(rng, 4)
    x = tf.Variable(rng.standard_normal(4).astype(np.float32))
    unused = tf.Variable([1.0, 2.0])
    a_t = tf.constant(a)

    def kl_fn():
        return 0.5 * tf.tensordot(x, tf.linalg.matvec(a_t, x), 1)

    v = rng.standard_normal(6).astype(np.float32)
    expected = np.concatenate([a @ v[:4], np.zeros(2, np.float32)])
    for fn in (tr.hessian_vector_product, tr.double_backward_hessian_vector_product):
        out = fn(kl_fn, [x, unused], tf.constant(v)).numpy()
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- line search


def _toy_line_search_problem(gain: np.ndarray, curvature: float):
    """Variables = one vector; surrogate = gain . theta (linear); kl = 0.5 * c * |theta - theta0|^2."""
    theta0 = np.array([0.5, -1.0, 2.0, 0.25], np.float32)
    var = tf.Variable(theta0)
    gain_t = tf.constant(gain, tf.float32)
    theta0_t = tf.constant(theta0)

    def evaluate():
        surrogate = tf.tensordot(gain_t, var, 1)
        kl = 0.5 * curvature * tf.reduce_sum(tf.square(var - theta0_t))
        return surrogate, kl

    return var, theta0, evaluate


def _expected_first_j(theta0, step, gain, curvature, max_kl, coef, max_steps):
    old_surr = float(gain.astype(np.float64) @ theta0.astype(np.float64))
    for j in range(max_steps):
        cand = theta0.astype(np.float64) + coef**j * step.astype(np.float64)
        surr = float(gain @ cand)
        kl = 0.5 * curvature * float(np.sum((cand - theta0) ** 2))
        if np.isfinite(surr) and np.isfinite(kl) and kl <= max_kl and surr > old_surr:
            return j
    return None


@pytest.mark.parametrize("use_function", [False, True], ids=["eager", "tf_function"])
@pytest.mark.parametrize("step_scale", [0.05, 1.0, 7.0, 30.0])
def test_line_search_accepts_first_qualifying_step(use_function, step_scale):
    gain = np.array([1.0, 0.5, -0.25, 2.0], np.float32)
    curvature, max_kl, coef, max_steps = 3.0, 0.02, 0.6, 12
    var, theta0, evaluate = _toy_line_search_problem(gain, curvature)
    step = (step_scale * gain / np.linalg.norm(gain)).astype(np.float32)
    expected_j = _expected_first_j(theta0, step, gain, curvature, max_kl, coef, max_steps)
    assert expected_j is not None

    def run(old, full, old_surr):
        return tr.backtracking_line_search([var], old, full, evaluate, old_surr, max_kl, coef, max_steps)

    if use_function:
        run = tf.function(run)
    old_surr = tf.tensordot(tf.constant(gain), tf.constant(theta0), 1)
    accepted, steps, full_surr, full_kl = run(tf.constant(theta0), tf.constant(step), old_surr)
    assert accepted.dtype == tf.bool and steps.dtype == tf.int32
    full = theta0.astype(np.float64) + step.astype(np.float64)  # the first candidate, by the toy's formulas
    assert float(full_surr) == pytest.approx(gain.astype(np.float64) @ full, rel=1e-5)
    assert float(full_kl) == pytest.approx(0.5 * curvature * np.sum(step.astype(np.float64) ** 2), rel=1e-5)
    assert bool(accepted.numpy())
    assert int(steps.numpy()) == expected_j + 1
    expected_theta = theta0.astype(np.float64) + coef**expected_j * step.astype(np.float64)
    np.testing.assert_allclose(var.numpy(), expected_theta, rtol=1e-5, atol=1e-6)
    surr, kl = evaluate()
    assert kl.numpy() <= max_kl
    assert surr.numpy() > old_surr.numpy()


@pytest.mark.parametrize("use_function", [False, True], ids=["eager", "tf_function"])
@pytest.mark.parametrize("failure", ["worse_surrogate", "nan", "kl_too_large"])
def test_line_search_restores_when_nothing_qualifies(use_function, failure):
    gain = np.array([1.0, 0.5, -0.25, 2.0], np.float32)
    curvature, max_kl, coef, max_steps = 3.0, 0.02, 0.5, 6
    var, theta0, evaluate = _toy_line_search_problem(gain, curvature)
    evaluations = tf.Variable(0)
    if failure == "worse_surrogate":
        step = -0.01 * gain  # surrogate decreases along the step
        evaluate_fn = evaluate
    elif failure == "nan":
        step = 0.01 * gain

        def evaluate_fn():
            surr, kl = evaluate()
            return surr * np.float32(np.nan), kl
    else:
        step = 1e3 * gain  # even coef**5 * step violates the KL limit
        evaluate_fn = evaluate
    assert _expected_first_j(theta0, step, gain, curvature, max_kl, coef, max_steps) is None or failure == "nan"

    def counted():
        evaluations.assign_add(1)
        return evaluate_fn()

    def run(old, full, old_surr):
        return tr.backtracking_line_search([var], old, full, counted, old_surr, max_kl, coef, max_steps)

    if use_function:
        run = tf.function(run)
    old_surr = tf.tensordot(tf.constant(gain), tf.constant(theta0), 1)
    accepted, steps, _, _ = run(tf.constant(theta0), tf.constant(step.astype(np.float32)), old_surr)
    assert not bool(accepted.numpy())
    assert int(steps.numpy()) == max_steps
    assert int(evaluations.numpy()) == max_steps
    np.testing.assert_array_equal(var.numpy(), theta0)


def test_line_search_zero_max_steps_restores():
    var = tf.Variable([1.0, 2.0])
    accepted, steps, full_surr, full_kl = tr.backtracking_line_search(
        [var], tf.constant([1.0, 2.0]), tf.constant([5.0, 5.0]),
        lambda: (tf.constant(1.0), tf.constant(0.0)), tf.constant(0.0), 0.01, 0.5, 0,
    )
    assert not bool(accepted.numpy()) and int(steps.numpy()) == 0
    assert np.isnan(float(full_surr)) and np.isnan(float(full_kl))  # no candidate was evaluated
    np.testing.assert_array_equal(var.numpy(), [1.0, 2.0])


# ----------------------------------------------------------------------------- full composition


def _full_trpo_step(policy, actions, advantages, old_logp, max_kl, damping, cg_iters):
    """One TRPO update composed from the module's functions (run eagerly or under tf.function)."""
    variables = policy.variables

    def surrogate():
        out = policy.model(policy.obs)
        params = tf.concat([out, tf.broadcast_to(policy.log_std, tf.shape(out))], axis=1)
        logp = policy._dist(params).log_prob(actions)
        return tf.reduce_mean(tf.exp(logp - old_logp) * advantages)

    def evaluate():
        return surrogate(), policy.kl_fn()

    def matvec(v):
        return tr.hessian_vector_product(policy.kl_fn, variables, v) + damping * v

    old_params = tr.get_flat(variables)
    old_surr = surrogate()
    grad = tr.flat_gradient(surrogate, variables)
    direction = tr.conjugate_gradient(matvec, grad, cg_iters)
    full_step = tr.scaled_step(matvec, direction, max_kl)
    accepted, steps, _, _ = tr.backtracking_line_search(
        variables, old_params, full_step, evaluate, old_surr, max_kl, 0.5, 10
    )
    return accepted, steps, full_step, old_surr, surrogate(), policy.kl_fn()


def test_full_step_inside_tf_function_matches_eager():
    results = {}
    for mode in ("eager", "graph"):
        policy = _TinyPolicy("gaussian", seed=7)
        rng = np.random.default_rng(8)
        actions = tf.constant(rng.standard_normal((16, 2)).astype(np.float32))
        advantages = tf.constant(rng.standard_normal(16).astype(np.float32))
        old_logp = tf.constant(policy._dist(policy.old_params).log_prob(actions))
        # Few CG iterations: with many Hessian eigenvalues clustered at the damping value, float32 CG
        # loses orthogonality after ~8 iterations and eager/graph rounding differences grow to ~1e-2.
        args = (policy, actions, advantages, old_logp, 0.01, 0.1, 4)
        if mode == "graph":
            step_fn = tf.function(lambda: _full_trpo_step(*args))
            out = step_fn()
        else:
            out = _full_trpo_step(*args)
        results[mode] = [o.numpy() for o in out] + [tr.get_flat(policy.variables).numpy(), policy.start.numpy()]

    eager, graph = results["eager"], results["graph"]
    accepted, steps, full_step, old_surr, new_surr, new_kl, params, start = graph
    assert bool(accepted) and bool(eager[0])
    assert int(steps) == int(eager[1])
    assert np.abs(full_step).max() > 0
    np.testing.assert_allclose(full_step, eager[2], rtol=1e-4, atol=1e-6)
    # Values read after the loop in the graph reflect the accepted assignment.
    np.testing.assert_allclose(params, eager[6], rtol=1e-5, atol=1e-6)
    expected_params = start + 0.5 ** (int(steps) - 1) * full_step
    np.testing.assert_allclose(params, expected_params, rtol=1e-5, atol=1e-6)
    assert new_kl <= 0.01 and new_surr > old_surr
    np.testing.assert_allclose(new_surr, eager[4], rtol=1e-4, atol=1e-6)


def test_hvp_in_tf_function_reads_freshly_assigned_variables():
    policy = _TinyPolicy("categorical", seed=9)
    rng = np.random.default_rng(10)
    n_params = int(policy.start.shape[0])
    new_params = policy.start + tf.constant(0.2 * rng.standard_normal(n_params).astype(np.float32))
    v = tf.constant(rng.standard_normal(n_params).astype(np.float32))

    @tf.function
    def assign_then_hvp(params, vec):
        tr.set_flat(policy.variables, params)
        return tr.hessian_vector_product(policy.kl_fn, policy.variables, vec)

    out = assign_then_hvp(new_params, v).numpy()
    np.testing.assert_allclose(tr.get_flat(policy.variables).numpy(), new_params.numpy())
    expected = policy.explicit_hessian().astype(np.float64) @ v.numpy().astype(np.float64)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
