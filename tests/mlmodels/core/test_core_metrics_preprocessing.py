"""Metrics against scikit-learn's; preprocessing fitted on training rows only; stratified folds."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from mlmodels.core.metrics import (
    accuracy_score,
    brier_score_loss,
    calibration_curve,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)
from mlmodels.core.model_selection import StratifiedKFold, train_test_split_indices
from mlmodels.core.preprocessing import OneHotEncoder, SimpleImputer, StandardScaler


@pytest.fixture(scope="module")
def predictions() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, 200)
    score = np.round(y_true * 0.3 + rng.uniform(0, 1, 200), 1)  # rounding creates ties
    y_pred = (score > 0.6).astype(int)
    return y_true, y_pred, score


def test_binary_metrics_match_sklearn(predictions: tuple) -> None:
    y_true, y_pred, score = predictions

    assert accuracy_score(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert precision_score(y_true, y_pred) == pytest.approx(skm.precision_score(y_true, y_pred))
    assert recall_score(y_true, y_pred) == pytest.approx(skm.recall_score(y_true, y_pred))
    assert f1_score(y_true, y_pred) == pytest.approx(skm.f1_score(y_true, y_pred))
    assert roc_auc_score(y_true, score) == pytest.approx(skm.roc_auc_score(y_true, score))
    proba = np.clip(score, 0.01, 0.99)
    assert log_loss(y_true, proba) == pytest.approx(skm.log_loss(y_true, proba))
    assert np.array_equal(confusion_matrix(y_true, y_pred), skm.confusion_matrix(y_true, y_pred))


def test_roc_curve_matches_sklearn(predictions: tuple) -> None:
    y_true, _, score = predictions

    fpr, tpr, thresholds = roc_curve(y_true, score)
    ref_fpr, ref_tpr, ref_thresholds = skm.roc_curve(y_true, score, drop_intermediate=False)

    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    np.testing.assert_allclose(thresholds[1:], ref_thresholds[1:])


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_multiclass_averages_match_sklearn(average: str) -> None:
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 4, 300)
    y_pred = np.where(rng.uniform(size=300) < 0.7, y_true, rng.integers(0, 4, 300))

    ours = precision_recall_fscore_support(y_true, y_pred, average=average)  # type: ignore[arg-type]
    reference = skm.precision_recall_fscore_support(y_true, y_pred, average=average)

    np.testing.assert_allclose(ours[:3], reference[:3])


def test_multiclass_log_loss_and_confusion_matrix_match_sklearn() -> None:
    rng = np.random.default_rng(2)
    y_true = rng.integers(0, 3, 50)
    proba = rng.dirichlet(np.ones(3), 50)

    assert log_loss(y_true, proba) == pytest.approx(skm.log_loss(y_true, proba))
    assert np.array_equal(
        confusion_matrix(y_true, proba.argmax(1), labels=[2, 0, 1]),
        skm.confusion_matrix(y_true, proba.argmax(1), labels=[2, 0, 1]),
    )


def test_undefined_metrics_raise_or_report_zero() -> None:
    with pytest.raises(ValueError, match="single class"):
        roc_auc_score([1, 1, 1], [0.1, 0.2, 0.3])
    assert precision_score([0, 1], [0, 0]) == 0.0
    with pytest.raises(ValueError, match="different lengths"):
        accuracy_score([0, 1], [0])


def test_scaler_uses_training_statistics_only() -> None:
    train = np.array([[0.0, 5.0], [2.0, 5.0]])
    test = np.array([[4.0, 7.0]])

    scaler = StandardScaler().fit(train)

    np.testing.assert_allclose(scaler.transform(test), [[3.0, 2.0]])  # constant column keeps scale 1
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(test)), test)


def test_imputer_fills_with_training_statistics() -> None:
    train = np.array([[1.0, np.nan], [3.0, 4.0], [np.nan, 6.0], [5.0, 6.0]])

    imputer = SimpleImputer(strategy="median").fit(train)
    filled = imputer.transform(np.array([[np.nan, np.nan]]))

    np.testing.assert_allclose(filled, [[3.0, 6.0]])
    most_frequent = SimpleImputer(strategy="most_frequent").fit(
        np.array([["S"], ["C"], ["S"], [None]], dtype=object)
    )
    assert most_frequent.transform(np.array([[None]], dtype=object))[0, 0] == "S"


def test_one_hot_encoder_ignores_unknown_categories() -> None:
    encoder = OneHotEncoder().fit(np.array([["S", 1], ["C", 3], ["Q", 1]], dtype=object))

    encoded = encoder.transform(np.array([["C", 3], ["X", 2]], dtype=object))

    assert encoder.get_feature_names_out(["port", "cls"]) == ["port_C", "port_Q", "port_S", "cls_1", "cls_3"]
    np.testing.assert_array_equal(encoded, [[1, 0, 0, 0, 1], [0, 0, 0, 0, 0]])
    with pytest.raises(ValueError, match="unknown category"):
        OneHotEncoder(handle_unknown="error").fit([["a"]]).transform([["b"]])


def test_stratified_kfold_partitions_and_keeps_class_balance() -> None:
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    folds = list(StratifiedKFold(5, random_state=0).split(None, y))

    test_parts = np.concatenate([test for _, test in folds])
    assert np.array_equal(np.sort(test_parts), np.arange(100))
    for train, test in folds:
        assert np.intersect1d(train, test).size == 0
        assert np.bincount(y[test]).tolist() == [12, 6, 2]


def test_stratified_kfold_is_reproducible_per_seed() -> None:
    y = np.arange(50) % 2

    first = [test.tolist() for _, test in StratifiedKFold(5, random_state=3).split(None, y)]
    again = [test.tolist() for _, test in StratifiedKFold(5, random_state=3).split(None, y)]
    other = [test.tolist() for _, test in StratifiedKFold(5, random_state=4).split(None, y)]

    assert first == again and first != other


def test_stratified_holdout_split_keeps_proportions() -> None:
    y = np.array([0] * 90 + [1] * 10)

    train, test = train_test_split_indices(y, test_size=0.2, random_state=0)

    assert test.size == 20 and np.bincount(y[test]).tolist() == [18, 2]
    assert np.intersect1d(train, test).size == 0 and train.size + test.size == 100


def test_brier_score_and_calibration_curve_match_sklearn() -> None:
    from sklearn.calibration import calibration_curve as sklearn_calibration_curve
    from sklearn.metrics import brier_score_loss as sklearn_brier_score_loss

    rng = np.random.default_rng(4)
    proba = rng.random(500)
    y = (rng.random(500) < proba**1.5).astype(int)

    observed, predicted, counts = calibration_curve(y, proba, n_bins=10)
    expected_observed, expected_predicted = sklearn_calibration_curve(y, proba, n_bins=10)

    assert brier_score_loss(y, proba) == pytest.approx(sklearn_brier_score_loss(y, proba), rel=1e-12)
    np.testing.assert_allclose(observed, expected_observed, rtol=1e-12)
    np.testing.assert_allclose(predicted, expected_predicted, rtol=1e-12)
    assert counts.sum() == 500
