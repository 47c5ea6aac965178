"""Limited-memory BFGS with a strong-Wolfe line search (Nocedal & Wright, algorithms 3.5, 3.6 and the
compact representation of section 7.2 / Byrd, Nocedal & Schnabel 1994)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

Objective = Callable[[NDArray[np.float64]], tuple[float, NDArray[np.float64]]]


@dataclass
class OptimizeResult:
    x: NDArray[np.float64]
    fun: float
    grad: NDArray[np.float64]
    n_iter: int
    converged: bool
    message: str
    history: list[float] = field(default_factory=list)


def minimize_lbfgs(
    fun: Objective,
    x0: NDArray[np.float64],
    *,
    gtol: float = 1e-5,
    ftol: float = 1e-14,
    max_iter: int = 500,
    memory: int = 10,
) -> OptimizeResult:
    """Minimize a smooth function given ``fun(x) -> (value, gradient)``.

    Converged when ``max|gradient| <= gtol``; stops early (also counted as converged) when an iteration
    improves the value by less than ``ftol`` relative, which is where floating point ends progress.
    """
    x = np.array(x0, dtype=np.float64)
    f, g = fun(x)
    history = [f]
    pairs: deque[tuple[NDArray[np.float64], NDArray[np.float64]]] = deque(maxlen=memory)
    for iteration in range(1, max_iter + 1):
        if np.max(np.abs(g)) <= gtol:
            return OptimizeResult(x, f, g, iteration - 1, True, "gradient below gtol", history)
        direction = -_inverse_hessian_product(g, pairs)
        slope = float(g @ direction)
        if slope >= 0:  # lost descent through round-off: fall back to steepest descent
            pairs.clear()
            direction, slope = -g, -float(g @ g)
        first_step = 1.0 if pairs else min(1.0, 1.0 / max(float(np.linalg.norm(g)), 1e-300))
        step = _line_search(fun, x, f0=f, g0=g, d=direction, slope0=slope, alpha=first_step)
        if step is None:
            if pairs:
                pairs.clear()
                continue
            return OptimizeResult(x, f, g, iteration, False, "line search failed", history)
        alpha, f_new, g_new = step
        s = alpha * direction
        y = g_new - g
        sy = float(s @ y)
        if sy > 1e-10 * float(y @ y):  # keep the curvature pair only if it keeps the matrix positive
            pairs.append((s, y))
        previous = f
        x, f, g = x + s, f_new, g_new
        history.append(f)
        if previous - f <= ftol * max(abs(previous), abs(f), 1.0):
            # Like SciPy's L-BFGS-B, a stall at round-off level counts as convergence.
            return OptimizeResult(x, f, g, iteration, True, "relative reduction below ftol", history)
    converged = bool(np.max(np.abs(g)) <= gtol)
    return OptimizeResult(x, f, g, max_iter, converged, "max_iter reached", history)


def _inverse_hessian_product(
    g: NDArray[np.float64], pairs: deque[tuple[NDArray[np.float64], NDArray[np.float64]]]
) -> NDArray[np.float64]:
    """L-BFGS inverse-Hessian approximation times ``g``, in the compact matrix form.

    Equal to the classic two-loop recursion, but a dozen small matrix operations instead of four vector
    operations per stored pair, which is what costs time at the problem sizes this library fits.
    """
    if not pairs:
        return g.copy()
    S = np.array([s for s, _ in pairs])
    Y = np.array([y for _, y in pairs])
    SY = S @ Y.T
    R = np.triu(SY)
    gamma = SY[-1, -1] / float(Y[-1] @ Y[-1])
    r_inv_p = np.linalg.solve(R, S @ g)
    a = np.linalg.solve(R.T, np.diag(SY) * r_inv_p + gamma * (Y @ (Y.T @ r_inv_p)) - gamma * (Y @ g))
    result: NDArray[np.float64] = gamma * g + S.T @ a - gamma * (Y.T @ r_inv_p)
    return result


def _line_search(
    fun: Objective,
    x: NDArray[np.float64],
    *,
    f0: float,
    g0: NDArray[np.float64],
    d: NDArray[np.float64],
    slope0: float,
    alpha: float,
    c1: float = 1e-4,
    c2: float = 0.9,
    max_evals: int = 40,
) -> tuple[float, float, NDArray[np.float64]] | None:
    """Step length satisfying the strong Wolfe conditions, or None."""
    prev_alpha, prev_f, prev_slope = 0.0, f0, slope0
    prev_g = g0
    evals = 0
    while evals < max_evals:
        f, g = fun(x + alpha * d)
        evals += 1
        slope = float(g @ d)
        if not np.isfinite(f):
            alpha = 0.5 * (prev_alpha + alpha)
            continue
        if f > f0 + c1 * alpha * slope0 or (evals > 1 and f >= prev_f):
            return _zoom(
                fun,
                x,
                f0=f0,
                slope0=slope0,
                d=d,
                lo=(prev_alpha, prev_f, prev_slope, prev_g),
                hi=(alpha, f, slope, g),
                c1=c1,
                c2=c2,
            )
        if abs(slope) <= -c2 * slope0:
            return alpha, f, g
        if slope >= 0:
            return _zoom(
                fun,
                x,
                f0=f0,
                slope0=slope0,
                d=d,
                lo=(alpha, f, slope, g),
                hi=(prev_alpha, prev_f, prev_slope, prev_g),
                c1=c1,
                c2=c2,
            )
        prev_alpha, prev_f, prev_slope, prev_g = alpha, f, slope, g
        alpha *= 2.0
    return None


def _zoom(
    fun: Objective,
    x: NDArray[np.float64],
    *,
    f0: float,
    slope0: float,
    d: NDArray[np.float64],
    lo: tuple[float, float, float, NDArray[np.float64]],
    hi: tuple[float, float, float, NDArray[np.float64]],
    c1: float,
    c2: float,
    max_evals: int = 30,
) -> tuple[float, float, NDArray[np.float64]] | None:
    for _ in range(max_evals):
        a_lo, f_lo, s_lo, _g_lo = lo
        a_hi, f_hi, s_hi, _g_hi = hi
        alpha = _cubic_minimizer((a_lo, f_lo, s_lo), (a_hi, f_hi, s_hi))
        f, g = fun(x + alpha * d)
        slope = float(g @ d)
        if f > f0 + c1 * alpha * slope0 or f >= f_lo:
            hi = (alpha, f, slope, g)
        else:
            if abs(slope) <= -c2 * slope0:
                return alpha, f, g
            if slope * (a_hi - a_lo) >= 0:
                hi = lo
            lo = (alpha, f, slope, g)
        if abs(hi[0] - lo[0]) <= 1e-14 * max(abs(lo[0]), 1.0):
            break
    a_lo, f_lo, _, g_lo = lo
    # The interval collapsed: accept the best point if it at least decreases the value.
    if a_lo > 0 and f_lo < f0:
        return a_lo, f_lo, g_lo
    return None


def _cubic_minimizer(first: tuple[float, float, float], second: tuple[float, float, float]) -> float:
    """Minimizer of the cubic through both ``(step, value, slope)`` end points, kept inside the interval."""
    a, fa, da = first
    b, fb, db = second
    low, high = min(a, b), max(a, b)
    margin = 0.1 * (high - low)
    try:
        d1 = da + db - 3.0 * (fa - fb) / (a - b)
        radicand = d1 * d1 - da * db
        if radicand >= 0:
            d2 = np.copysign(np.sqrt(radicand), b - a)
            candidate = b - (b - a) * (db + d2 - d1) / (db - da + 2.0 * d2)
            if np.isfinite(candidate) and low + margin <= candidate <= high - margin:
                return float(candidate)
    except ZeroDivisionError:
        pass
    return 0.5 * (a + b)
