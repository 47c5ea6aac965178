"""The NumPy estimators as scikit-learn citizens: its estimator checks, its tools, its input validation.

scikit-learn is a test dependency only; the last test proves that importing the core does not load it.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import check_is_fitted

from mlmodels.core import (
    CNNClassifier,
    ImageAugmenter,
    LogisticRegression,
    MLPClassifier,
    NotFittedError,
)

ROOT = Path(__file__).resolve().parents[3]

# Small networks and enough epochs at a higher learning rate for the checks' toy sets (a few hundred rows):
# the whole run takes seconds. The CNN reads each row as a one-pixel-high strip (input_shape=None).
CHECKED_ESTIMATORS = [
    LogisticRegression(),
    MLPClassifier().set_params(hidden_layer_sizes=(16,), learning_rate=1e-2, max_epochs=50, random_state=0),
    CNNClassifier().set_params(
        conv_channels=(4,),
        dense_units=(8,),
        input_shape=None,
        learning_rate=1e-2,
        max_epochs=30,
        random_state=0,
    ),
]

# Every check an estimator is expected to fail, with the reason: the one place they are listed. It is
# empty because all three pass every check that runs here; xfail_strict makes a listed check that
# passes an error, so the list cannot go stale. (Checks skipped by scikit-learn itself show as
# skipped, not passed: the pandas ones, pandas not being installed, and the array-API one, which
# needs SCIPY_ARRAY_API set and array-API support the NumPy core does not claim.)
EXPECTED_FAILURES: dict[str, dict[str, str]] = {
    "LogisticRegression": {},
    "MLPClassifier": {},
    "CNNClassifier": {},
}


def expected_failures(estimator: object) -> dict[str, str]:
    return EXPECTED_FAILURES[type(estimator).__name__]


@parametrize_with_checks(CHECKED_ESTIMATORS, expected_failed_checks=expected_failures, xfail_strict=True)
def test_passes_sklearn_estimator_checks(estimator: object, check: object) -> None:
    with warnings.catch_warnings():
        # Our estimators do not subclass sklearn.base.BaseEstimator on purpose (the core imports no
        # scikit-learn); the checks warn about that once per estimator.
        warnings.filterwarnings("ignore", message=".*does not inherit from `sklearn.base.BaseEstimator`")
        check(estimator)  # type: ignore[operator]


@pytest.fixture(scope="module")
def binary_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 5))
    X[:, 0] *= 10.0
    y = (X[:, 0] / 10.0 + X[:, 1] - 0.5 * X[:, 2] + 0.5 * rng.standard_normal(200) > 0).astype(int)
    return X, y


def small_mlp() -> MLPClassifier:
    return MLPClassifier(
        hidden_layer_sizes=(8,),
        learning_rate=1e-2,
        batch_size=16,
        max_epochs=20,
        early_stopping=False,
        random_state=0,
    )


def test_get_params_deep_reaches_nested_components_and_set_params_sets_them() -> None:
    model = MLPClassifier(augmentation=ImageAugmenter((28, 28), max_shift=2.0))

    deep = model.get_params(deep=True)
    model.set_params(augmentation__max_shift=3.0, max_epochs=4)

    assert deep["augmentation__max_shift"] == 2.0
    assert "augmentation__max_shift" not in model.get_params(deep=False)
    assert model.augmentation.max_shift == 3.0
    assert model.max_epochs == 4
    with pytest.raises(ValueError, match="MLPClassifier has no parameter 'no_such'"):
        model.set_params(no_such=1)


def test_clone_copies_parameters_and_drops_the_fit(binary_data: tuple) -> None:
    X, y = binary_data
    fitted = LogisticRegression(C=0.5, penalty="l1").fit(X, y)

    copy = clone(fitted)

    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "coef_")
    assert is_classifier(copy)


def test_pipeline_and_grid_search_choose_c_by_cross_validation(binary_data: tuple) -> None:
    X, y = binary_data
    pipeline = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())])

    search = GridSearchCV(pipeline, {"model__C": [1e-4, 1.0]}, cv=StratifiedKFold(4), scoring="accuracy")
    search.fit(X, y)

    # C=1e-4 shrinks every weight to almost nothing: it predicts the majority class only.
    assert search.best_params_ == {"model__C": 1.0}
    scores = search.cv_results_["mean_test_score"]
    assert scores[1] > scores[0] + 0.1
    assert search.best_estimator_.named_steps["model"].coef_.shape == (1, 5)


@pytest.mark.parametrize("make", [LogisticRegression, small_mlp], ids=["logreg", "mlp"])
def test_cross_val_score_with_roc_auc_is_finite_and_good(binary_data: tuple, make: object) -> None:
    X, y = binary_data

    scores = cross_val_score(make(), X, y, cv=StratifiedKFold(3), scoring="roc_auc")  # type: ignore[operator]

    assert np.all(np.isfinite(scores))
    assert scores.mean() > 0.85


@pytest.mark.parametrize("make", [LogisticRegression, small_mlp], ids=["logreg", "mlp"])
def test_binary_decision_function_is_the_log_odds_of_the_second_class(
    binary_data: tuple, make: object
) -> None:
    X, y = binary_data
    model = make().fit(X, y)  # type: ignore[operator]

    scores = model.decision_function(X[:20])
    proba = model.predict_proba(X[:20])

    assert scores.shape == (20,)
    np.testing.assert_allclose(1.0 / (1.0 + np.exp(-scores)), proba[:, 1], rtol=1e-4, atol=1e-6)


def test_multiclass_decision_function_has_one_column_per_class() -> None:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((90, 3))
    y = np.repeat([0, 1, 2], 30)

    scores = small_mlp().fit(X, y).decision_function(X)

    assert scores.shape == (90, 3)


@pytest.mark.parametrize("make", [LogisticRegression, small_mlp, CNNClassifier], ids=["logreg", "mlp", "cnn"])
@pytest.mark.parametrize("method", ["predict", "predict_proba", "decision_function", "score"])
def test_use_before_fit_raises_not_fitted_error_sklearn_recognizes(make: object, method: str) -> None:
    model = make()  # type: ignore[operator]
    X = np.zeros((3, 784))
    arguments = (X, np.zeros(3)) if method == "score" else (X,)

    with pytest.raises(NotFittedError) as raised:
        getattr(model, method)(*arguments)

    assert isinstance(raised.value, SklearnNotFittedError)
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, AttributeError)
    with pytest.raises(SklearnNotFittedError):
        check_is_fitted(model)


def test_check_is_fitted_accepts_a_fitted_model(binary_data: tuple) -> None:
    X, y = binary_data

    check_is_fitted(LogisticRegression().fit(X, y))
    check_is_fitted(small_mlp().fit(X, y))


@pytest.mark.parametrize("make", [LogisticRegression, small_mlp], ids=["logreg", "mlp"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_x_is_a_clear_error_in_fit_and_predict(
    binary_data: tuple, make: object, bad: float
) -> None:
    X, y = binary_data
    broken = X.copy()
    broken[7, 2] = bad
    model = make()  # type: ignore[operator]

    with pytest.raises(ValueError, match=r"Input X contains (NaN|infinity)"):
        model.fit(broken, y)
    model.fit(X, y)
    with pytest.raises(ValueError, match=r"Input X contains (NaN|infinity)"):
        model.predict(broken)


def flat_cnn() -> CNNClassifier:
    return CNNClassifier((4,), dense_units=(8,), input_shape=None, max_epochs=2, random_state=0)


@pytest.mark.parametrize("make", [LogisticRegression, small_mlp, flat_cnn], ids=["logreg", "mlp", "cnn"])
def test_bad_inputs_are_refused_as_sklearn_refuses_them(binary_data: tuple, make: object) -> None:
    X, y = binary_data
    model = make()  # type: ignore[operator]

    with pytest.raises(ValueError, match="Complex data not supported"):
        model.fit(X + 1j, y)
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        model.fit(X[:, 0], y)
    with pytest.raises(ValueError, match=r"0 feature\(s\)"):
        model.fit(np.empty((200, 0)), y)
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        model.fit(X, y + 0.5 * np.random.default_rng(0).random(200))


@pytest.mark.parametrize("make", [LogisticRegression, small_mlp], ids=["logreg", "mlp"])
def test_n_features_in_is_set_by_fit_and_checked_by_predict(binary_data: tuple, make: object) -> None:
    X, y = binary_data

    model = make().fit(X, y)  # type: ignore[operator]

    assert model.n_features_in_ == 5
    with pytest.raises(ValueError, match=r"X has 4 features, but \w+ is expecting 5 features"):
        model.predict(X[:, :4])


def test_cnn_on_flattened_images_reads_them_with_its_input_shape() -> None:
    rng = np.random.default_rng(0)
    images = rng.random((40, 8, 8, 1)).astype(np.float32)
    y = (images[:, :4].mean(axis=(1, 2, 3)) > images[:, 4:].mean(axis=(1, 2, 3))).astype(int)
    model = CNNClassifier((4,), dense_units=(8,), input_shape=(8, 8, 1), max_epochs=2, random_state=0)

    model.fit(images.reshape(40, 64), y)

    assert model.n_features_in_ == 64
    np.testing.assert_allclose(model.predict_proba(images), model.predict_proba(images.reshape(40, 64)))
    with pytest.raises(ValueError, match="X has 63 features"):
        model.predict(images.reshape(40, 64)[:, :63])


def _sklearn_modules_after(imports: str) -> subprocess.CompletedProcess[str]:
    code = (
        f"import sys, {imports}; "
        "loaded = sorted(m for m in sys.modules if m == 'sklearn' or m.startswith('sklearn.')); "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    return subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_importing_the_core_loads_no_sklearn() -> None:
    core = _sklearn_modules_after("mlmodels.core, mlmodels.core.training, mlmodels.core.validation")
    control = _sklearn_modules_after("mlmodels.core, sklearn.base")

    assert core.returncode == 0, core.stdout + core.stderr
    assert control.returncode == 1, control.stdout + control.stderr  # the probe does see scikit-learn
