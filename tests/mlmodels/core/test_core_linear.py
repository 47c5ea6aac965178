"""Logistic regression: same optimum as scikit-learn, every solver, weights, toy problems."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression as SklearnLogisticRegression

from mlmodels.core.exceptions import ConvergenceWarning, NotFittedError
from mlmodels.core.lbfgs import minimize_lbfgs
from mlmodels.core.linear import LogisticRegression
from mlmodels.core.preprocessing import StandardScaler
from mlmodels.core.titanic import TitanicFeatures
from mlmodels.datasets import load_titanic


@pytest.fixture(scope="module")
def binary_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 8))
    X[:, 0] *= 4.0  # badly scaled columns make the solvers work for it
    X[:, 1] += 3.0
    w = rng.standard_normal(8)
    y = (X @ w * 0.5 + rng.standard_normal(400) > 0.2).astype(int)
    return X, y


def sklearn_fit(X: np.ndarray, y: np.ndarray, **kwargs: object) -> SklearnLogisticRegression:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SklearnLogisticRegression(tol=1e-12, max_iter=100_000, **kwargs).fit(X, y)


@pytest.mark.parametrize("solver", ["newton-cholesky", "lbfgs", "gd", "fista"])
@pytest.mark.parametrize("C", [0.01, 1.0, 100.0])
def test_l2_reaches_the_sklearn_optimum(binary_data: tuple, solver: str, C: float) -> None:
    X, y = binary_data
    reference = sklearn_fit(X, y, C=C, l1_ratio=0.0)

    model = LogisticRegression(C=C, solver=solver, tol=1e-8, max_iter=100_000).fit(X, y)

    np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-4)
    np.testing.assert_allclose(model.intercept_, reference.intercept_, atol=1e-4)
    assert model.converged_ and model.n_iter_ > 0


@pytest.mark.parametrize("solver", ["newton-cd", "fista"])
@pytest.mark.parametrize("C", [0.02, 0.3, 3.0])
def test_l1_matches_sklearn_saga_and_liblinear(binary_data: tuple, C: float, solver: str) -> None:
    X, y = binary_data
    saga = sklearn_fit(X, y, C=C, l1_ratio=1.0, solver="saga")
    # liblinear penalizes its intercept, so compare it on the problem without one.
    liblinear = sklearn_fit(X, y, C=C, l1_ratio=1.0, solver="liblinear", fit_intercept=False)

    model = LogisticRegression(penalty="l1", C=C, solver=solver, tol=1e-9, max_iter=100_000).fit(X, y)  # type: ignore[arg-type]
    no_intercept = LogisticRegression(
        penalty="l1",
        C=C,
        solver=solver,
        tol=1e-9,
        max_iter=100_000,
        fit_intercept=False,  # type: ignore[arg-type]
    ).fit(X, y)

    np.testing.assert_allclose(model.coef_, saga.coef_, atol=1e-4)
    np.testing.assert_allclose(model.intercept_, saga.intercept_, atol=1e-4)
    np.testing.assert_allclose(no_intercept.coef_, liblinear.coef_, atol=1e-4)
    assert np.array_equal(model.coef_ == 0, saga.coef_ == 0)


def ill_conditioned_data() -> tuple[np.ndarray, np.ndarray]:
    """Unscaled (column scales 1 to 0.1, means 0 to 4, none centred) with two nearly collinear columns
    (correlation 0.999): FISTA's first-order steps crawl here, while saga at a tight tolerance still
    reaches the optimum in a couple of seconds."""
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((300, 6))
    Z[:, 1] = Z[:, 0] + 0.05 * Z[:, 1]
    X = Z * np.logspace(0, -1, 6) + np.linspace(0, 4, 6)
    y = (Z @ rng.standard_normal(6) + 0.7 * rng.standard_normal(300) > 0).astype(int)
    return X, y


def sklearn_objective(model: object, X: np.ndarray, y: np.ndarray, *, C: float, l1_ratio: float) -> float:
    """scikit-learn's objective at a fitted model's ``coef_`` and ``intercept_`` (binary)."""
    w = model.coef_.ravel()  # type: ignore[attr-defined]
    z = X @ w + model.intercept_[0]  # type: ignore[attr-defined]
    loss = np.sum(np.logaddexp(0.0, z) - y * z)
    return float(C * loss + l1_ratio * np.abs(w).sum() + 0.5 * (1 - l1_ratio) * w @ w)


@pytest.mark.parametrize(("penalty", "l1_ratio"), [("l1", 1.0), ("elasticnet", 0.5)])
def test_l1_and_elastic_net_reach_the_saga_optimum_at_default_settings_on_ill_conditioned_data(
    penalty: str, l1_ratio: float
) -> None:
    X, y = ill_conditioned_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saga = SklearnLogisticRegression(
            l1_ratio=l1_ratio, C=1.0, solver="saga", tol=1e-10, max_iter=100_000
        ).fit(X, y)
    reference = sklearn_objective(saga, X, y, C=1.0, l1_ratio=l1_ratio)

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = LogisticRegression(penalty=penalty, l1_ratio=l1_ratio).fit(X, y)  # type: ignore[arg-type]
    gap = (sklearn_objective(model, X, y, C=1.0, l1_ratio=l1_ratio) - reference) / reference

    assert saga.n_iter_[0] < 100_000  # saga converged: its objective is the optimum to compare with
    assert abs(gap) <= 1e-4
    assert model.solver_ == "newton-cd" and model.converged_ and model.n_iter_ < 20
    np.testing.assert_allclose(model.coef_, saga.coef_, atol=1e-3)
    np.testing.assert_array_equal(model.coef_ == 0, saga.coef_ == 0)


@pytest.mark.parametrize("C", [0.5, 5.0])
def test_l1_reaches_the_saga_optimum_with_collinear_one_hot_columns(C: float) -> None:
    # The Titanic features hold one-hot groups that sum to one (class, title, deck, port): a singular
    # Hessian for every Newton step.
    data = load_titanic()
    X = StandardScaler().fit_transform(TitanicFeatures().fit_transform(data.records))
    y = data.y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saga = SklearnLogisticRegression(l1_ratio=1.0, C=C, solver="saga", tol=1e-10, max_iter=100_000).fit(
            X, y
        )

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = LogisticRegression(penalty="l1", C=C).fit(X, y)

    reference = sklearn_objective(saga, X, y, C=C, l1_ratio=1.0)
    assert saga.n_iter_[0] < 100_000
    assert abs(sklearn_objective(model, X, y, C=C, l1_ratio=1.0) - reference) <= 1e-4 * reference
    assert model.converged_ and model.n_iter_ < 20


def test_fista_stays_short_of_the_optimum_on_the_same_data_at_its_default_iterations() -> None:
    X, y = ill_conditioned_data()
    optimum = LogisticRegression(penalty="l1").fit(X, y)

    with pytest.warns(ConvergenceWarning):
        fista = LogisticRegression(penalty="l1", solver="fista").fit(X, y)

    # Why the default changed: the old default solver stops well above the optimum here.
    gap = (
        sklearn_objective(fista, X, y, C=1.0, l1_ratio=1.0)
        / sklearn_objective(optimum, X, y, C=1.0, l1_ratio=1.0)
        - 1
    )
    assert gap > 1e-3


@pytest.mark.parametrize("penalty", ["l1", "elasticnet"])
def test_multinomial_l1_newton_cd_agrees_with_long_fista(penalty: str) -> None:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((240, 5)) * [3.0, 1.0, 1.0, 0.5, 0.2]
    y = np.argmax(X @ rng.standard_normal((5, 3)) + rng.standard_normal((240, 3)), axis=1)

    model = LogisticRegression(penalty=penalty, C=0.3).fit(X, y)  # type: ignore[arg-type]
    reference = LogisticRegression(penalty=penalty, C=0.3, solver="fista", tol=1e-10, max_iter=200_000).fit(
        X, y
    )  # type: ignore[arg-type]

    assert model.solver_ == "newton-cd" and model.converged_
    np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-5)
    np.testing.assert_allclose(
        model.intercept_ - model.intercept_.mean(),
        reference.intercept_ - reference.intercept_.mean(),
        atol=1e-5,
    )


def test_l1_produces_exact_zeros_when_strong() -> None:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 10))
    y = (X[:, 0] - X[:, 1] > 0).astype(int)

    model = LogisticRegression(penalty="l1", C=0.05).fit(X, y)

    assert np.count_nonzero(model.coef_[0, 2:]) == 0
    assert np.all(model.coef_[0, :2] != 0)


def test_elastic_net_matches_sklearn_saga(binary_data: tuple) -> None:
    X, y = binary_data
    reference = sklearn_fit(X, y, C=0.2, l1_ratio=0.3, solver="saga")

    model = LogisticRegression(penalty="elasticnet", l1_ratio=0.3, C=0.2, tol=1e-9, max_iter=100_000).fit(
        X, y
    )

    np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-4)
    np.testing.assert_allclose(model.intercept_, reference.intercept_, atol=1e-4)


def test_balanced_and_dict_class_weights_match_sklearn(binary_data: tuple) -> None:
    X, y = binary_data
    for class_weight in ("balanced", {0: 1.0, 1: 3.0}):
        reference = sklearn_fit(X, y, C=0.5, l1_ratio=0.0, class_weight=class_weight)

        model = LogisticRegression(C=0.5, class_weight=class_weight, tol=1e-9).fit(X, y)

        np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-4)


def test_unpenalized_fit_matches_sklearn(binary_data: tuple) -> None:
    X, y = binary_data
    reference = sklearn_fit(X, y, C=np.inf)

    model = LogisticRegression(penalty=None, tol=1e-9).fit(X, y)

    np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-4)


def test_multinomial_matches_sklearn() -> None:
    rng = np.random.default_rng(2)
    X = rng.standard_normal((300, 5))
    y = np.digitize(X @ rng.standard_normal(5), [-1.0, 1.0])
    reference = sklearn_fit(X, y, C=0.5, l1_ratio=0.0)

    model = LogisticRegression(C=0.5, tol=1e-9).fit(X, y)

    np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-4)
    np.testing.assert_allclose(model.predict_proba(X), reference.predict_proba(X), atol=1e-5)
    assert model.solver_ == "lbfgs"


def test_intercept_is_not_penalized() -> None:
    X = np.zeros((100, 1))
    y = np.array([1] * 90 + [0] * 10)

    model = LogisticRegression(C=1e-4).fit(X, y)

    assert model.intercept_[0] == pytest.approx(np.log(9.0), abs=1e-6)


def test_separable_toy_set_is_learned() -> None:
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(-2, 0.5, (50, 2)), rng.normal(2, 0.5, (50, 2))])
    y = np.array([0] * 50 + [1] * 50)

    model = LogisticRegression(C=10.0).fit(X, y)

    assert model.score(X, y) == 1.0
    assert np.all((model.predict_proba(X)[:, 1] > 0.5) == y.astype(bool))


def test_predictions_are_consistent(binary_data: tuple) -> None:
    X, y = binary_data
    model = LogisticRegression().fit(X, y)

    proba = model.predict_proba(X)
    scores = model.decision_function(X)

    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-scores)))
    assert np.array_equal(model.predict(X), (scores > 0).astype(int))
    assert model.loss_curve_[-1] <= model.loss_curve_[0]


def test_string_labels_round_trip() -> None:
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array(["died", "died", "survived", "survived"])

    model = LogisticRegression(C=100.0).fit(X, y)

    assert model.predict(X).tolist() == y.tolist()


def test_too_few_iterations_warn() -> None:
    X = np.random.default_rng(4).standard_normal((50, 3))
    y = (X[:, 0] > 0).astype(int)

    with pytest.warns(ConvergenceWarning):
        model = LogisticRegression(solver="gd", max_iter=2, tol=1e-12).fit(X, y)

    assert model.n_iter_ == 2 and not model.converged_


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"penalty": "l1", "solver": "lbfgs"}, "newton-cd"),
        ({"C": -1.0}, "positive"),
        ({"penalty": "l3"}, "unknown penalty"),
        ({"solver": "sag"}, "unknown solver"),
    ],
)
def test_invalid_configurations_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LogisticRegression(**kwargs).fit(np.eye(4), [0, 1, 0, 1])


def test_predict_before_fit_raises() -> None:
    with pytest.raises(NotFittedError):
        LogisticRegression().predict(np.eye(2))


def test_nan_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="NaN"):
        LogisticRegression().fit(np.array([[np.nan], [1.0]]), [0, 1])


def test_lbfgs_minimizes_the_rosenbrock_function() -> None:
    def rosenbrock(x: np.ndarray) -> tuple[float, np.ndarray]:
        value = (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
        grad = np.array([-2 * (1 - x[0]) - 400 * x[0] * (x[1] - x[0] ** 2), 200 * (x[1] - x[0] ** 2)])
        return value, grad

    result = minimize_lbfgs(rosenbrock, np.array([-1.2, 1.0]), gtol=1e-10, max_iter=500)

    assert result.converged
    np.testing.assert_allclose(result.x, [1.0, 1.0], atol=1e-6)
