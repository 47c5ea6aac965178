"""Regularized logistic regression with Newton, L-BFGS, gradient-descent and FISTA solvers.

The objective is scikit-learn's, so fitted coefficients are directly comparable::

    C * sum_i s_i * loss_i + (1 - l1_ratio) / 2 * ||w||^2 + l1_ratio * ||w||_1

with ``s_i`` the class (and sample) weights and the intercept never penalized. Solvers minimize it divided
by ``C * sum(s)``, which has the same minimizer and a tolerance independent of the data size.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mlmodels.core.base import BaseEstimator, ClassifierMixin
from mlmodels.core.exceptions import ConvergenceWarning
from mlmodels.core.lbfgs import minimize_lbfgs
from mlmodels.core.validation import check_array, check_classification_targets, check_n_features

Penalty = Literal["l2", "l1", "elasticnet"] | None
Solver = Literal["auto", "newton-cholesky", "newton-cd", "lbfgs", "gd", "fista"]
# Proximal Newton builds the Hessian of every parameter (p x p, and k^2 d x d products of the data); past
# this many parameters "auto" uses FISTA for L1, whose iterations cost one pass over the data.
NEWTON_CD_MAX_PARAMETERS = 600
F64 = NDArray[np.float64]


class LogisticRegression(ClassifierMixin, BaseEstimator):
    """Binary or multinomial logistic regression.

    Solvers: ``"newton-cholesky"`` (Newton's method with exact Hessian solves, i.e. IRLS; binary, L2 or
    none), ``"newton-cd"`` (proximal Newton for L1 and elastic net: each step minimizes the quadratic
    model plus the L1 term by coordinate descent, then backtracks on the true objective, as in
    liblinear's newGLMNET), ``"lbfgs"`` (quasi-Newton), ``"gd"`` (gradient descent with Armijo
    backtracking) and ``"fista"`` (accelerated proximal gradient with adaptive restart).
    ``"auto"`` picks Newton for binary smooth problems with up to 500 features, L-BFGS for other smooth
    problems, and for a penalty with an L1 part proximal Newton up to ``NEWTON_CD_MAX_PARAMETERS``
    parameters (it converges in a few steps however badly the features are scaled or correlated,
    where FISTA's first-order steps crawl), FISTA beyond.

    ``tol`` bounds the largest gradient component (for L1: of the minimum-norm subgradient; for FISTA:
    of the proximal-gradient step) of the objective divided by ``C * sum(weights)``.
    """

    def __init__(
        self,
        *,
        penalty: Penalty = "l2",
        C: float = 1.0,
        l1_ratio: float = 0.5,
        fit_intercept: bool = True,
        class_weight: Mapping[Any, float] | Literal["balanced"] | None = None,
        solver: Solver = "auto",
        tol: float = 1e-6,
        max_iter: int = 1000,
    ) -> None:
        self.penalty = penalty
        self.C = C
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.class_weight = class_weight
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter

    # ----------------------------------------------------------------------------------------- fitting
    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> LogisticRegression:
        data = check_array(X, estimator=self)
        labels = check_classification_targets(y, data.shape[0])
        classes, codes = np.unique(labels, return_inverse=True)
        if classes.shape[0] < 2:
            raise ValueError(f"y has {classes.shape[0]} class; a classifier needs at least two")
        l1, l2 = self._penalty_weights()
        weights = self._sample_weights(classes, codes, sample_weight)
        solver = self._resolve_solver(classes.shape[0], data.shape[1], l1)

        problem = _Problem(
            data,
            codes,
            n_classes=classes.shape[0],
            weights=weights,
            C=self.C,
            l1=l1,
            l2=l2,
            fit_intercept=self.fit_intercept,
        )
        theta0 = problem.initial_theta()
        if solver == "newton-cholesky":
            theta, n_iter, converged, curve = _newton(problem, theta0, self.tol, self.max_iter)
        elif solver == "lbfgs":
            result = minimize_lbfgs(problem.value_and_grad, theta0, gtol=self.tol, max_iter=self.max_iter)
            theta, n_iter, converged, curve = result.x, result.n_iter, result.converged, result.history
        elif solver == "gd":
            theta, n_iter, converged, curve = _gradient_descent(problem, theta0, self.tol, self.max_iter)
        elif solver == "newton-cd":
            theta, n_iter, converged, curve = _newton_cd(problem, theta0, self.tol, self.max_iter)
        else:
            theta, n_iter, converged, curve = _fista(problem, theta0, self.tol, self.max_iter)
        if not converged:
            warnings.warn(
                f"{solver} stopped after {n_iter} iterations without reaching tol={self.tol}; "
                "increase max_iter or scale the features",
                ConvergenceWarning,
                stacklevel=2,
            )
        W, b = problem.unpack(theta)
        self.classes_ = classes
        self.coef_ = W.T.copy()
        self.intercept_ = b.copy()
        self.n_features_in_ = data.shape[1]
        self.n_iter_ = int(n_iter)
        self.converged_ = bool(converged)
        self.solver_ = solver
        self.loss_curve_ = [float(v) for v in curve]
        return self

    def _penalty_weights(self) -> tuple[float, float]:
        if not self.C > 0:
            raise ValueError(f"C must be positive, got {self.C}")
        if self.penalty is None or np.inf == self.C:
            return 0.0, 0.0
        if self.penalty == "l2":
            return 0.0, 1.0
        if self.penalty == "l1":
            return 1.0, 0.0
        if self.penalty == "elasticnet":
            if not 0.0 <= self.l1_ratio <= 1.0:
                raise ValueError(f"l1_ratio must be in [0, 1], got {self.l1_ratio}")
            return float(self.l1_ratio), 1.0 - float(self.l1_ratio)
        raise ValueError(f"unknown penalty {self.penalty!r}")

    def _sample_weights(
        self, classes: NDArray[Any], codes: NDArray[np.intp], sample_weight: ArrayLike | None
    ) -> F64:
        n = codes.shape[0]
        weights = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if weights.shape != (n,) or np.any(weights < 0):
            raise ValueError("sample_weight must be one non-negative number per sample")
        if self.class_weight == "balanced":
            counts = np.bincount(codes, minlength=classes.shape[0])
            per_class = n / (classes.shape[0] * counts)
            weights = weights * per_class[codes]
        elif self.class_weight is not None:
            per_class = np.array([float(self.class_weight.get(c.item(), 1.0)) for c in classes])
            weights = weights * per_class[codes]
        return weights

    def _resolve_solver(self, n_classes: int, n_features: int, l1: float) -> str:
        solver = self.solver
        if solver == "auto":
            if l1 > 0:
                k = 1 if n_classes == 2 else n_classes
                n_parameters = (n_features + int(self.fit_intercept)) * k
                return "newton-cd" if n_parameters <= NEWTON_CD_MAX_PARAMETERS else "fista"
            return "newton-cholesky" if n_classes == 2 and n_features <= 500 else "lbfgs"
        if solver not in ("newton-cholesky", "newton-cd", "lbfgs", "gd", "fista"):
            raise ValueError(f"unknown solver {solver!r}")
        if l1 > 0 and solver not in ("fista", "newton-cd"):
            raise ValueError(
                f"solver {solver!r} needs a smooth objective; use solver='newton-cd' or 'fista' for "
                f"{self.penalty}"
            )
        if solver == "newton-cholesky" and n_classes != 2:
            raise ValueError("newton-cholesky handles binary problems; use lbfgs for multinomial")
        return solver

    # -------------------------------------------------------------------------------------- prediction
    def decision_function(self, X: ArrayLike) -> F64:
        """Log-odds of the positive class (binary) or one score per class (multinomial)."""
        self._check_is_fitted("coef_")
        data = check_array(X, estimator=self)
        check_n_features(self, data)
        scores = data @ self.coef_.T + self.intercept_
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict_proba(self, X: ArrayLike) -> F64:
        """Class probabilities, one column per entry of ``classes_``."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            positive = _sigmoid(scores)
            return np.column_stack([1.0 - positive, positive])
        return _softmax(scores)

    def predict(self, X: ArrayLike) -> NDArray[Any]:
        scores = self.decision_function(X)
        classes: NDArray[Any] = self.classes_
        index = (scores > 0).astype(np.intp) if scores.ndim == 1 else np.argmax(scores, axis=1)
        predicted: NDArray[Any] = classes[index]
        return predicted


def _sigmoid(z: F64) -> F64:
    # exp(-log(1 + e^-z)) never overflows and keeps full relative precision for tiny probabilities.
    out: F64 = np.exp(-np.logaddexp(0.0, -z))
    return out


def _softmax(z: F64) -> F64:
    shifted: F64 = z - z.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


class _Problem:
    """The scaled objective; parameters live in one flat vector ``[W (d x k) row-major, b (k)]``.

    Binary problems use one column (the sigmoid parametrization, like scikit-learn's ``coef_`` of shape
    ``(1, d)``); multinomial problems use one column per class.
    """

    def __init__(
        self,
        X: F64,
        codes: NDArray[np.intp],
        *,
        n_classes: int,
        weights: F64,
        C: float,
        l1: float,
        l2: float,
        fit_intercept: bool,
    ) -> None:
        self.X = X
        self.n, self.d = X.shape
        self.k = 1 if n_classes == 2 else n_classes
        self.fit_intercept = fit_intercept
        total = float(weights.sum())
        if total <= 0:
            raise ValueError("the sample weights sum to zero")
        self.s = weights / total
        finite_c = C if np.isfinite(C) else 1.0
        self.l1 = l1 / (finite_c * total)
        self.l2 = l2 / (finite_c * total)
        if self.k == 1:
            self.Y = codes.astype(np.float64)[:, None]
        else:
            self.Y = np.zeros((self.n, self.k))
            self.Y[np.arange(self.n), codes] = 1.0
        self.size = self.d * self.k + (self.k if fit_intercept else 0)

    def unpack(self, theta: F64) -> tuple[F64, F64]:
        W = theta[: self.d * self.k].reshape(self.d, self.k)
        b = theta[self.d * self.k :] if self.fit_intercept else np.zeros(self.k)
        return W, b

    def initial_theta(self) -> F64:
        theta = np.zeros(self.size)
        if self.fit_intercept:
            prior = np.clip(self.s @ self.Y, 1e-12, None)
            if self.k == 1:
                p = float(np.clip(prior[0], 1e-12, 1 - 1e-12))
                theta[-1] = np.log(p / (1 - p))
            else:
                theta[-self.k :] = np.log(prior) - np.log(prior).mean()
        return theta

    def scores(self, theta: F64) -> F64:
        W, b = self.unpack(theta)
        return self.X @ W + b

    def data_loss(self, Z: F64) -> float:
        if self.k == 1:
            z = Z[:, 0]
            losses = np.logaddexp(0.0, z) - self.Y[:, 0] * z
        else:
            top = Z.max(axis=1, keepdims=True)
            lse = np.log(np.exp(Z - top).sum(axis=1)) + top[:, 0]
            losses = lse - np.sum(self.Y * Z, axis=1)
        return float(self.s @ losses)

    def residual(self, Z: F64) -> F64:
        """d(loss)/d(scores), already multiplied by the normalized weights."""
        P = _sigmoid(Z[:, 0])[:, None] if self.k == 1 else _softmax(Z)
        return (P - self.Y) * self.s[:, None]

    def grad_from_residual(self, R: F64, theta: F64) -> F64:
        W, _ = self.unpack(theta)
        gW = self.X.T @ R + self.l2 * W
        if self.fit_intercept:
            return np.concatenate([gW.ravel(), R.sum(axis=0)])
        return gW.ravel()

    def smooth_value_and_grad(self, theta: F64) -> tuple[float, F64]:
        """Loss plus the L2 part only (the smooth part FISTA differentiates)."""
        Z = self.scores(theta)
        W, _ = self.unpack(theta)
        value = self.data_loss(Z) + 0.5 * self.l2 * float(np.sum(W * W))
        return value, self.grad_from_residual(self.residual(Z), theta)

    def value_and_grad(self, theta: F64) -> tuple[float, F64]:
        return self.smooth_value_and_grad(theta)

    def value(self, theta: F64) -> float:
        W, _ = self.unpack(theta)
        smooth = self.data_loss(self.scores(theta)) + 0.5 * self.l2 * float(np.sum(W * W))
        return smooth + self.l1 * float(np.abs(W).sum())

    def design(self) -> F64:
        return np.column_stack([self.X, np.ones(self.n)]) if self.fit_intercept else self.X

    def hessian(self, theta: F64) -> F64:
        """Hessian of the smooth part, in the order of ``theta`` (index ``j * k + c`` for feature ``j``,
        class ``c``, the intercepts being feature ``d``)."""
        design = self.design()
        Z = self.scores(theta)
        m = design.shape[1]
        if self.k == 1:
            p = _sigmoid(Z[:, 0])
            H: F64 = (design.T * (self.s * p * (1.0 - p))) @ design
        else:
            P = _softmax(Z)
            H = np.empty((m, self.k, m, self.k))
            for c in range(self.k):
                for c2 in range(c, self.k):
                    curvature = self.s * P[:, c] * ((1.0 if c == c2 else 0.0) - P[:, c2])
                    block = (design.T * curvature) @ design
                    H[:, c, :, c2] = block
                    H[:, c2, :, c] = block.T
            H = H.reshape(m * self.k, m * self.k)
        n_weights = self.d * self.k
        H[np.arange(n_weights), np.arange(n_weights)] += self.l2
        return H

    def lipschitz_bound(self) -> float:
        """Upper bound on the smooth part's gradient Lipschitz constant."""
        weighted = self.design() * np.sqrt(self.s)[:, None]
        top = float(np.linalg.norm(weighted, 2)) ** 2
        curvature = 0.25 if self.k == 1 else 0.5  # bounds on the largest eigenvalue of the loss Hessian
        return curvature * top + self.l2


def _newton(problem: _Problem, theta: F64, tol: float, max_iter: int) -> tuple[F64, int, bool, list[float]]:
    """Damped Newton (IRLS) for the binary smooth objective, solving the d x d system by Cholesky."""
    X = problem.X
    design = np.column_stack([X, np.ones(problem.n)]) if problem.fit_intercept else X
    ridge = np.full(design.shape[1], problem.l2)
    if problem.fit_intercept:
        ridge[-1] = 0.0
    value, grad = problem.value_and_grad(theta)
    curve = [value]
    for iteration in range(1, max_iter + 1):
        if np.max(np.abs(grad)) <= tol:
            return theta, iteration - 1, True, curve
        z = design @ theta
        p = _sigmoid(z)
        curvature = problem.s * p * (1.0 - p)
        hessian = (design.T * curvature) @ design
        hessian[np.diag_indices_from(hessian)] += ridge
        try:
            factor = np.linalg.cholesky(hessian)
            step = -np.linalg.solve(factor.T, np.linalg.solve(factor, grad))
        except np.linalg.LinAlgError:
            # Singular without a penalty (e.g. a constant column): least squares picks the minimal step.
            step = -np.linalg.lstsq(hessian, grad, rcond=None)[0]
        slope = float(grad @ step)
        alpha = 1.0
        while True:
            candidate = theta + alpha * step
            new_value, new_grad = problem.value_and_grad(candidate)
            if new_value <= value + 1e-4 * alpha * slope or alpha < 1e-10:
                break
            alpha *= 0.5
        if alpha < 1e-10:
            return theta, iteration, bool(np.max(np.abs(grad)) <= tol), curve
        theta, value, grad = candidate, new_value, new_grad
        curve.append(value)
    return theta, max_iter, bool(np.max(np.abs(grad)) <= tol), curve


def _gradient_descent(
    problem: _Problem, theta: F64, tol: float, max_iter: int
) -> tuple[F64, int, bool, list[float]]:
    """Steepest descent with Armijo backtracking; the step grows again after each accepted move."""
    value, grad = problem.value_and_grad(theta)
    step = 1.0 / problem.lipschitz_bound()
    curve = [value]
    for iteration in range(1, max_iter + 1):
        if np.max(np.abs(grad)) <= tol:
            return theta, iteration - 1, True, curve
        squared = float(grad @ grad)
        while True:
            candidate = theta - step * grad
            new_value, new_grad = problem.value_and_grad(candidate)
            if new_value <= value - 0.5 * step * squared or step < 1e-16:
                break
            # Near the optimum the decrease drowns in round-off of the value; the secant curvature along
            # the step, computed from gradients, still certifies the step as the descent lemma requires.
            if float((grad - new_grad) @ grad) <= squared and new_value <= value + 1e-12 * abs(value):
                break
            step *= 0.5
        theta, value, grad = candidate, new_value, new_grad
        curve.append(value)
        step *= 2.0
    return theta, max_iter, bool(np.max(np.abs(grad)) <= tol), curve


def _subgradient_size(theta: F64, grad: F64, l1: float, n_weights: int) -> float:
    """Largest component of the minimum-norm subgradient of smooth part + L1: zero exactly at the optimum."""
    g = grad.copy()
    w, gw = theta[:n_weights], grad[:n_weights]
    g[:n_weights] = np.where(w != 0, gw + l1 * np.sign(w), np.sign(gw) * np.maximum(np.abs(gw) - l1, 0.0))
    return float(np.max(np.abs(g))) if g.size else 0.0


def _newton_cd(
    problem: _Problem, theta: F64, tol: float, max_iter: int
) -> tuple[F64, int, bool, list[float]]:
    """Proximal Newton for L1/elastic net (newGLMNET: Yuan, Ho & Lin 2012, the solver inside liblinear).

    Each step minimizes the second-order model of the smooth part plus the exact L1 term by cyclic
    coordinate descent (soft-thresholding each weight in turn; intercepts unpenalized), then backtracks
    along that direction until the true objective decreases enough (Armijo on the model's predicted
    decrease). Coordinate descent on the model is invariant to how each feature is scaled, and the
    Newton steps converge in a handful of iterations where first-order methods need thousands on
    unscaled, correlated features.
    """
    n_weights = problem.d * problem.k
    l1 = problem.l1
    value = problem.value(theta)
    curve = [value]
    for iteration in range(1, max_iter + 1):
        _, grad = problem.smooth_value_and_grad(theta)
        size = _subgradient_size(theta, grad, l1, n_weights)
        if size <= tol:
            return theta, iteration - 1, True, curve
        H = problem.hessian(theta)
        delta = _model_minimizer(theta, grad, H, l1, n_weights)
        w, step_w = theta[:n_weights], delta[:n_weights]
        predicted = float(grad @ delta) + l1 * float(np.abs(w + step_w).sum() - np.abs(w).sum())
        if not predicted < 0:
            # The model cannot improve on theta: only round-off separates it from the optimum.
            return theta, iteration, bool(size <= tol), curve
        alpha = 1.0
        while True:
            candidate = theta + alpha * delta
            new_value = problem.value(candidate)
            if new_value <= value + 1e-4 * alpha * predicted:
                break
            alpha *= 0.5
            if alpha < 1e-12:
                return theta, iteration, False, curve
        theta, value = candidate, new_value
        curve.append(value)
    _, grad = problem.smooth_value_and_grad(theta)
    return theta, max_iter, _subgradient_size(theta, grad, l1, n_weights) <= tol, curve


def _model_minimizer(theta: F64, grad: F64, H: F64, l1: float, n_weights: int, *, sweeps: int = 5) -> F64:
    """``delta`` minimizing the model ``grad @ delta + delta @ H @ delta / 2 + l1 * |w + delta_w|_1``.

    A few sweeps of cyclic coordinate descent (soft-thresholding each weight) find which weights are
    non-zero; then an active-set loop solves the model exactly: a Newton solve on the non-zero weights
    and the intercepts with their signs fixed, stopped where a weight would cross zero (it leaves), and
    a coordinate step for any zero weight whose model gradient exceeds ``l1`` (it enters). Coordinate
    descent alone crawls on correlated features (the rate is the squared correlation per sweep); the
    exact solve does not care.
    """
    size = theta.shape[0]
    penalized = np.arange(size) < n_weights
    diagonal = np.maximum(np.diagonal(H).copy(), 1e-300)
    u = theta.copy()
    residual = grad.copy()  # the model's smooth gradient at u: grad + H (u - theta)

    def coordinate_step(j: int) -> None:
        a = diagonal[j]
        z = u[j] - residual[j] / a
        target = np.sign(z) * max(abs(z) - l1 / a, 0.0) if penalized[j] else z
        change = target - u[j]
        if change != 0.0:
            u[j] = target
            residual[:] += change * H[j]

    def model_value(point: F64) -> float:
        step = point - theta
        return float(grad @ step + 0.5 * step @ H @ step + l1 * np.abs(point[:n_weights]).sum())

    for _ in range(sweeps):
        for j in range(size):
            coordinate_step(j)
    warm = u.copy()
    # Collinear columns (one-hot groups, a feature repeated) make H singular: a tiny ridge keeps each solve
    # defined, and the sign-fixed model's unbounded direction then ends at the ratio test, as it should.
    ridge = 1e-10 * float(diagonal.max())
    for _ in range(4 * size + 20):
        free = ~penalized | (u != 0.0)
        signs = np.where(penalized, np.sign(u), 0.0)
        index = np.flatnonzero(free)
        rhs = -(residual[index] + l1 * signs[index])
        block = H[np.ix_(index, index)] + ridge * np.eye(index.shape[0])
        try:
            step = np.linalg.solve(block, rhs)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(block, rhs, rcond=None)[0]
        # Ratio test: stop at the first non-zero weight that would change sign.
        t, leaving = 1.0, -1
        for position, j in enumerate(index.tolist()):
            if penalized[j] and step[position] != 0.0 and np.sign(u[j] + step[position]) != np.sign(u[j]):
                crossing = -u[j] / step[position]
                if crossing < t:
                    t, leaving = crossing, j
        u[index] += t * step
        residual[:] += H[:, index] @ (t * step)
        if leaving >= 0:
            u[leaving] = 0.0
            continue
        zero = np.flatnonzero(penalized & (u == 0.0))
        violators = zero[np.abs(residual[zero]) > l1 * (1.0 + 1e-9) + 1e-15]
        if violators.size == 0:
            break
        coordinate_step(int(violators[np.argmax(np.abs(residual[violators]))]))
    # Round-off in a nearly singular solve must never leave the model worse than coordinate descent did.
    best = u if model_value(u) <= model_value(warm) else warm
    return best - theta


def _fista(problem: _Problem, theta: F64, tol: float, max_iter: int) -> tuple[F64, int, bool, list[float]]:
    """FISTA (Beck & Teboulle 2009) with gradient-based adaptive restart (O'Donoghue & Candes 2015).

    The proximal step soft-thresholds the weights only: the intercept is not penalized.
    """
    n_weights = problem.d * problem.k
    step = 1.0 / problem.lipschitz_bound()
    threshold = step * problem.l1
    x = theta.copy()
    y = theta.copy()
    t = 1.0
    curve = [problem.value(x)]
    for iteration in range(1, max_iter + 1):
        _, grad = problem.smooth_value_and_grad(y)
        x_new = y - step * grad
        weights = x_new[:n_weights]
        x_new[:n_weights] = np.sign(weights) * np.maximum(np.abs(weights) - threshold, 0.0)
        mapping = (y - x_new) / step  # the proximal-gradient mapping, zero exactly at the optimum
        if np.dot(y - x_new, x_new - x) > 0:  # momentum points uphill: restart it
            t = 1.0
        t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        y = x_new + ((t - 1.0) / t_new) * (x_new - x)
        x, t = x_new, t_new
        curve.append(problem.value(x))
        if np.max(np.abs(mapping)) <= tol:
            return x, iteration, True, curve
    return x, max_iter, False, curve
