"""Shared by the curvature tests: an explicit Hessian of a KL, and H·v of the policy step against it."""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

from trpo_tf import TRPOConfig
from trpo_tf.update import PolicyUpdate


def explicit_hessian(mean_kl: Callable[[tf.Tensor], tf.Tensor], theta: tf.Tensor) -> np.ndarray:
    """The Hessian [P, P] of ``mean_kl`` at the flat parameters ``theta`` [P] (where it is ~0), float64."""
    with tf.GradientTape() as outer:
        outer.watch(theta)
        with tf.GradientTape() as inner:
            inner.watch(theta)
            kl = mean_kl(theta)
        gradient = inner.gradient(kl, theta)
    hessian = outer.jacobian(gradient, theta).numpy().astype(np.float64)
    assert abs(float(kl)) < 1e-6 and np.allclose(hessian, hessian.T, atol=1e-6)
    return hessian


def assert_curvature_product_matches(policy: object, method: str, features: tf.Tensor, hessian: np.ndarray,
                                     masks: tf.Tensor | None = None) -> None:
    """The policy step's H·v by ``method`` at ``features`` (with action ``masks``, when given) equals
    ``hessian`` @ v for a random v."""
    vector = np.random.default_rng(4).normal(size=hessian.shape[0]).astype(np.float32)
    update = PolicyUpdate(policy, TRPOConfig(hvp_method=method))
    product = update.curvature_product(features, masks)(tf.constant(vector))
    expected = hessian @ vector
    assert np.linalg.norm(expected) > 1e-3
    np.testing.assert_allclose(product.numpy(), expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())
