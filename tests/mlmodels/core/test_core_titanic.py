"""Titanic features, validation of raw passengers, the cross-validated target and persistence."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

from mlmodels.core import training
from mlmodels.core.exceptions import InvalidFields
from mlmodels.core.metrics import brier_score_loss
from mlmodels.core.serialization import load_model, save_model
from mlmodels.core.titanic import TitanicFeatures, make_titanic_model, passenger_title, predict_passenger
from mlmodels.core.training import TITANIC_C_GRID, titanic_grid_probabilities, train_titanic
from mlmodels.datasets import load_titanic


def passenger(**changes: Any) -> dict[str, Any]:
    base = {"pclass": 1, "sex": "female", "age": 29, "sibsp": 0, "parch": 0, "fare": 80.0, "embarked": "C"}
    base.update(changes)
    return base


@pytest.fixture(scope="module")
def titanic_result() -> Any:
    return train_titanic(seed=0)


def test_cross_validated_accuracy_reaches_the_target(titanic_result: Any) -> None:
    metrics = titanic_result.metrics

    assert metrics["cv_accuracy_mean"] >= 0.80
    assert metrics["cv_roc_auc_mean"] >= 0.85
    assert len(titanic_result.history) == 5
    assert titanic_result.confusion_matrix.sum() == 891


def test_c_is_chosen_by_cross_validation_and_the_nested_outer_accuracy_reported(titanic_result: Any) -> None:
    metrics, extra = titanic_result.metrics, titanic_result.extra

    chosen = metrics["chosen_C"]
    losses = extra["C_selection"]["mean_log_loss"]

    assert chosen in TITANIC_C_GRID
    assert losses[TITANIC_C_GRID.index(chosen)] == min(losses)
    assert chosen == titanic_result.model.named_steps["classifier"].C
    assert 0.78 <= metrics["nested_cv_accuracy_mean"] <= 0.86
    assert metrics["nested_cv_accuracy_std"] > 0
    assert all(row["nested_C"] in TITANIC_C_GRID for row in titanic_result.history)


def test_nested_selection_never_sees_the_outer_fold_it_is_scored_on(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[np.ndarray] = []
    choose = training.titanic_select_C

    def spy(records: Any, y: Any, rows: np.ndarray, **options: Any) -> Any:
        seen.append(rows.copy())
        return choose(records, y, rows, **{**options, "grid": (0.1, 1.0)})

    monkeypatch.setattr(training, "titanic_select_C", spy)

    result = train_titanic(n_splits=3)

    all_rows, *outer_training_parts = seen
    assert np.array_equal(all_rows, np.arange(891))  # the final model's C: chosen on every passenger
    assert len(outer_training_parts) == 3
    for rows, row in zip(outer_training_parts, result.history, strict=True):
        assert rows.shape[0] == row["n_train"] and row["n_train"] + row["n_test"] == 891
    held_out = [set(range(891)) - set(rows.tolist()) for rows in outer_training_parts]
    assert set().union(*held_out) == set(range(891))  # the outer test parts, disjoint and covering all


def test_grid_probabilities_are_the_pipelines_for_each_c() -> None:
    data = load_titanic()
    train, test = np.arange(0, 600), np.arange(600, 891)

    grid = titanic_grid_probabilities(data.records, data.y, train, test, grid=(0.05, 2.0))

    for row, C in enumerate((0.05, 2.0)):
        model = make_titanic_model(C=C).fit([data.records[i] for i in train], data.y[train])
        expected = model.predict_proba([data.records[i] for i in test])[:, 1]
        np.testing.assert_allclose(grid[row], expected, rtol=1e-12, atol=1e-12)


def test_brier_score_and_calibration_come_from_the_out_of_fold_predictions(titanic_result: Any) -> None:
    calibration = titanic_result.extra["calibration"]
    metrics = titanic_result.metrics

    assert sum(calibration["count"]) == 891
    assert len(calibration["predicted"]) == len(calibration["observed"]) <= 10
    assert all(0.0 <= value <= 1.0 for value in calibration["predicted"] + calibration["observed"])
    # Better than always predicting the base rate (0.383 survived: Brier 0.236), worse than perfect.
    assert 0.08 < metrics["oof_brier"] < 0.2
    assert metrics["oof_brier"] < brier_score_loss(load_titanic().y, np.full(891, 0.3838))


def test_training_reports_progress_per_fold_and_a_json_summary() -> None:
    calls: list[tuple[int, int]] = []

    result = train_titanic(seed=1, C=1.0, progress=lambda step, total, row: calls.append((step, total)))

    assert calls == [(step, 6) for step in range(1, 7)]
    summary = result.summary()
    assert summary["kind"] == "titanic-logreg" and "model" not in summary
    assert "title_Mr" in summary["extra"]["coefficients"]
    assert result.hyperparameters["steps"][2][1]["class"] == "LogisticRegression"


@pytest.mark.parametrize(
    ("name", "sex", "age", "expected"),
    [
        ("Braund, Mr. Owen Harris", "male", 22, "Mr"),
        ("Rothes, the Countess. of (Lucy Noel Martha Dyer-Edwards)", "female", 33, "Rare"),
        ("Aubart, Mme. Leontine Pauline", "female", 24, "Mrs"),
        ("Sagesser, Mlle. Emma", "female", 24, "Miss"),
        ("Uruchurtu, Don. Manuel E", "male", 40, "Rare"),
        (None, "male", 5, "Master"),
        (None, "male", None, "Mr"),
        (None, "female", 45, "Mrs"),
    ],
)
def test_title_comes_from_the_name_or_a_guess(
    name: str | None, sex: str, age: float | None, expected: str
) -> None:
    assert passenger_title({"name": name, "sex": sex, "age": age, "parch": 0}) == expected


def test_features_are_learned_from_the_training_rows_only() -> None:
    train = [
        passenger(name="A, Master. B", sex="male", age=4, ticket="T1"),
        passenger(name="C, Master. D", sex="male", age=6, ticket="T1"),
        passenger(name="E, Mr. F", sex="male", age=40, ticket="T2", fare=None, pclass=3),
        passenger(name="G, Mr. H", sex="male", age=None, ticket="T3", fare=8.0, pclass=3, embarked=None),
    ]
    features = TitanicFeatures().fit(train)

    row = dict(
        zip(
            features.get_feature_names_out(),
            features.transform([passenger(name="I, Master. J", sex="male", age=None, ticket="T1")])[0],
            strict=True,
        )
    )
    missing_fare = features.transform([passenger(pclass=3, fare=None)])[0]

    assert row["age"] == 5.0 and row["age_missing"] == 1.0
    # A new passenger on a ticket two training passengers hold travels in a group of three.
    assert row["ticket_group_size"] == 3.0
    assert row["log_fare_per_person"] == pytest.approx(np.log1p(80.0 / 3))
    assert missing_fare[features.feature_names_.index("log_fare")] == pytest.approx(np.log1p(8.0))
    assert features.embarked_mode_ == "C"


def group_sizes(features: TitanicFeatures, matrix: np.ndarray) -> list[float]:
    return list(matrix[:, features.feature_names_.index("ticket_group_size")])


def test_travel_group_is_the_passenger_plus_the_other_training_passengers_for_every_row() -> None:
    train = [passenger(ticket="T1") for _ in range(3)] + [passenger(ticket="T2") for _ in range(2)]
    train += [passenger(ticket="T3"), passenger(ticket=None)]
    held_out = [
        passenger(ticket="T2"),
        passenger(ticket="T3"),
        passenger(ticket="T9"),
        passenger(ticket=None),
    ]
    features = TitanicFeatures()

    trained_on = group_sizes(features, features.fit_transform(train))
    new = group_sizes(features, features.transform(held_out))

    # Training rows: T1's three see two others each, T2's two one other, T3's one none.
    assert trained_on == [3.0, 3.0, 3.0, 2.0, 2.0, 1.0, 1.0]
    # New rows, same rule: T2 has two training holders besides this passenger (as T1 for a training
    # row), T3 one, an unknown ticket none. The old rule gave 2, 1, 1: one fewer than for a training row.
    assert new == [3.0, 2.0, 1.0, 1.0]


def test_the_pipeline_trains_on_the_training_row_rule_and_predicts_with_the_new_row_rule() -> None:
    train = [passenger(ticket="T1", sex=sex) for sex in ("male", "female", "male", "female")]
    train += [passenger(ticket=f"S{i}", sex=sex) for i, sex in enumerate(("male", "female") * 3)]
    y = np.array([0, 1, 0, 1] + [0, 1] * 3)

    model = make_titanic_model().fit(train, y)

    features, scaler = model.named_steps["features"], model.named_steps["scale"]
    column = features.feature_names_.index("ticket_group_size")
    # What the scaler (and so the classifier) saw: 4 passengers in a group of 4, 6 alone.
    assert scaler.mean_[column] == pytest.approx((4 * 4 + 6 * 1) / 10)
    assert group_sizes(features, features.transform([passenger(ticket="T1")])) == [5.0]


def test_predicting_one_raw_passenger() -> None:
    data = load_titanic()
    model = make_titanic_model().fit(data.records, data.y)

    first_class_woman = predict_passenger(model, passenger())
    third_class_man = predict_passenger(
        model, passenger(pclass=3, sex="male", fare=7.25, embarked="S", age=30)
    )
    sparse = predict_passenger(model, passenger(age=None, fare=None, embarked=None, name=None))

    assert first_class_woman.survived and first_class_woman.probability > 0.8
    logit = first_class_woman.intercept + sum(first_class_woman.contributions.values())
    assert 1 / (1 + np.exp(-logit)) == pytest.approx(first_class_woman.probability)
    assert third_class_man.contributions["title_Mr"] < 0 < first_class_woman.contributions["class_1"]
    assert not third_class_man.survived and third_class_man.probability < 0.2
    assert 0.0 < sparse.probability < 1.0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"pclass": 4}, "pclass"),
        ({"pclass": True}, "pclass"),
        ({"sex": "other"}, "sex"),
        ({"age": -1}, "age"),
        ({"age": "old"}, "age"),
        ({"sibsp": 1.5}, "sibsp"),
        ({"parch": -2}, "parch"),
        ({"fare": float("nan")}, "fare"),
        ({"embarked": "X"}, "embarked"),
        ({"cabin": 12}, "cabin"),
        ({"Age": 3}, "Age"),
    ],
)
def test_invalid_fields_are_named(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidFields) as error:
        predict_passenger(make_titanic_model(), passenger(**changes))

    assert error.value.field == field
    assert isinstance(error.value, ValueError)


def test_missing_required_fields_are_all_reported() -> None:
    raw = passenger()
    del raw["sex"], raw["fare"]

    with pytest.raises(InvalidFields) as error:
        predict_passenger(make_titanic_model(), raw)

    assert set(error.value.errors) == {"sex", "fare"}
    assert "required" in error.value.errors["fare"]


def test_lenient_but_unambiguous_spellings_are_accepted() -> None:
    data = load_titanic()
    model = make_titanic_model().fit(data.records, data.y)

    loose = predict_passenger(model, passenger(pclass="1", sex=" Female ", age="29", embarked="cherbourg"))

    assert loose == predict_passenger(model, passenger())


def test_saved_pipeline_predicts_identically() -> None:
    data = load_titanic()
    model = make_titanic_model().fit(data.records, data.y)
    buffer = io.BytesIO()

    save_model(model, buffer)
    buffer.seek(0)
    loaded = load_model(buffer)

    assert np.array_equal(loaded.predict_proba(data.records), model.predict_proba(data.records))
    assert loaded.named_steps["features"].ticket_counts_ == model.named_steps["features"].ticket_counts_
