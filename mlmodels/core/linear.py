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
Solver = Literal["auto", "newton-cholesky", "lbfgs", "gd", "fista"]
F64 = NDArray[np.float64]


class LogisticRegression(ClassifierMixin, BaseEstimator):
    """Binary or multinomial logistic regression.

    Solvers: ``"newton-cholesky"`` (Newton's method with exact Hessian solves, i.e. IRLS; binary, L2 or
    none), ``"lbfgs"`` (quasi-Newton), ``"gd"`` (gradient descent with Armijo backtracking) and
    ``"fista"`` (accelerated proximal gradient with adaptive restart, the solver for L1 and elastic-net).
    ``"auto"`` picks Newton for binary smooth problems with up to 500 features, L-BFGS for other smooth
    problems and FISTA when the penalty has an L1 part.

    ``tol`` bounds the largest gradient component (the proximal-gradient step for FISTA) of the
    objective divided by ``C * sum(weights)``.
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
                return "fista"
            return "newton-cholesky" if n_classes == 2 and n_features <= 500 else "lbfgs"
        if solver not in ("newton-cholesky", "lbfgs", "gd", "fista"):
            raise ValueError(f"unknown solver {solver!r}")
        if l1 > 0 and solver != "fista":
            raise ValueError(
                f"solver {solver!r} needs a smooth objective; use solver='fista' for {self.penalty}"
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

    def lipschitz_bound(self) -> float:
        """Upper bound on the smooth part's gradient Lipschitz constant."""
        design = np.column_stack([self.X, np.ones(self.n)]) if self.fit_intercept else self.X
        weighted = design * np.sqrt(self.s)[:, None]
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
