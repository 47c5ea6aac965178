"""Titanic survival: passenger validation, feature engineering and the model pipeline.

A passenger is a mapping of raw fields, as the Kaggle CSV (lower-cased) or an API would provide them:
``pclass``, ``sex``, ``age``, ``sibsp``, ``parch``, ``fare``, ``embarked`` (required keys; ``age``,
``fare`` and ``embarked`` may be ``None`` when unknown and are then imputed from training statistics)
and optionally ``name``, ``cabin``, ``ticket``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mlmodels.core.base import BaseEstimator, TransformerMixin
from mlmodels.core.exceptions import InvalidFields
from mlmodels.core.linear import LogisticRegression
from mlmodels.core.pipeline import Pipeline
from mlmodels.core.preprocessing import StandardScaler

REQUIRED_FIELDS = ("pclass", "sex", "age", "sibsp", "parch", "fare", "embarked")
OPTIONAL_FIELDS = ("name", "cabin", "ticket")
TITLES = ("Mr", "Mrs", "Miss", "Master", "Rare")
DECKS = ("A", "B", "C", "D", "E", "F", "G", "U")
PORTS = ("C", "Q", "S")
_PORT_NAMES = {"cherbourg": "C", "queenstown": "Q", "southampton": "S"}
_TITLE_ALIASES = {
    "Mlle": "Miss",
    "Ms": "Miss",
    "Mme": "Mrs",
    "Lady": "Rare",
    "Countess": "Rare",
    "Dona": "Rare",
}
_TITLE_PATTERN = re.compile(r",\s*(?:the\s+)?([A-Za-z]+)\.")


@dataclass(frozen=True)
class PassengerPrediction:
    """``contributions`` maps each feature to its share of the log-odds (coefficient x scaled value),
    largest magnitude first; with ``intercept`` they sum to the logit of ``probability``."""

    survived: bool
    probability: float
    contributions: dict[str, float] = field(default_factory=dict)
    intercept: float = 0.0
    # The passenger's own feature values before scaling (1/0 for indicators), to explain in their terms.
    features: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------- validation
def validate_passenger(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Check and normalize one passenger; raises :class:`InvalidFields` listing every bad field."""
    if not isinstance(raw, Mapping):
        raise InvalidFields("passenger", f"expected an object of fields, got {type(raw).__name__}")
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for key in raw:
        if key not in REQUIRED_FIELDS and key not in OPTIONAL_FIELDS:
            errors[str(key)] = "unexpected field"
    for key in REQUIRED_FIELDS:
        if key not in raw:
            errors[key] = "this field is required (use null for an unknown age, fare or port)"

    def check(key: str, parser: Any) -> None:
        if key in raw and key not in errors:
            try:
                clean[key] = parser(raw[key])
            except ValueError as error:
                errors[key] = str(error)

    check("pclass", lambda v: _integer(v, low=1, high=3, what="ticket class (1, 2 or 3)"))
    check("sex", _sex)
    check("age", lambda v: _optional(v, lambda x: _number(x, low=0.0, high=120.0, what="an age in years")))
    check("sibsp", lambda v: _integer(v, low=0, high=20, what="a count of siblings/spouses aboard"))
    check("parch", lambda v: _integer(v, low=0, high=20, what="a count of parents/children aboard"))
    check(
        "fare", lambda v: _optional(v, lambda x: _number(x, low=0.0, high=10000.0, what="a fare in pounds"))
    )
    check("embarked", lambda v: _optional(v, _port))
    for key, limit in (("name", 200), ("cabin", 50), ("ticket", 50)):
        if key in raw:
            check(key, lambda v, limit=limit: _optional(v, lambda x: _text(x, limit)))
        else:
            clean[key] = None
    if errors:
        first = next(iter(errors))
        raise InvalidFields(first, errors[first], errors=errors)
    return clean


def _optional(value: Any, parse: Any) -> Any:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    return parse(value)


def _integer(value: Any, *, low: int, high: int, what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected {what}, got a boolean")
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, (int, np.integer)):
        raise ValueError(f"expected {what} as a whole number, got {value!r}")
    if not low <= int(value) <= high:
        raise ValueError(f"expected {what} between {low} and {high}, got {value}")
    return int(value)


def _number(value: Any, *, low: float, high: float, what: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected {what}, got a boolean")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"expected {what}, got {value!r}") from None
    if not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(float(value)):
        raise ValueError(f"expected {what} as a finite number, got {value!r}")
    if not low <= float(value) <= high:
        raise ValueError(f"expected {what} between {low:g} and {high:g}, got {value}")
    return float(value)


def _sex(value: Any) -> str:
    if isinstance(value, str) and value.strip().lower() in ("male", "female"):
        return value.strip().lower()
    raise ValueError(f"expected 'male' or 'female', got {value!r}")


def _port(value: Any) -> str:
    if isinstance(value, str):
        text = value.strip()
        if text.upper() in PORTS:
            return text.upper()
        if text.lower() in _PORT_NAMES:
            return _PORT_NAMES[text.lower()]
    raise ValueError(
        f"expected a port of embarkation C, Q or S (Cherbourg, Queenstown, Southampton), got {value!r}"
    )


def _text(value: Any, limit: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {type(value).__name__}")
    text = value.strip()
    if len(text) > limit:
        raise ValueError(f"expected at most {limit} characters, got {len(text)}")
    return text


# --------------------------------------------------------------------------------------- features
def passenger_title(passenger: Mapping[str, Any]) -> str:
    """Title from ``"Surname, Title. Given names"``; without a name, the likeliest one for sex and age."""
    name = passenger.get("name")
    if name:
        match = _TITLE_PATTERN.search(name)
        if match:
            title = _TITLE_ALIASES.get(match.group(1), match.group(1))
            return title if title in TITLES else "Rare"
    age = passenger.get("age")
    if passenger["sex"] == "male":
        return "Master" if age is not None and age < 13 else "Mr"
    # Unmarried women were "Miss" at any age, but without a name the young ones are the safe guess.
    return "Miss" if age is None or age < 25 or (passenger.get("parch", 0) > 0 and age < 30) else "Mrs"


def _deck(cabin: str | None) -> str:
    if not cabin:
        return "U"
    letter = cabin.strip()[0].upper()
    return letter if letter in DECKS else "U"


class TitanicFeatures(TransformerMixin, BaseEstimator):
    """Raw passengers to a numeric matrix; every statistic comes from the rows given to ``fit``.

    Learned: median age per title (imputes missing ages), median fare per class (imputes missing
    fares), the most common port, and how many training passengers hold each ticket.

    The travel-group size (which also turns a group ticket's fare into a per-person fare) is one rule for
    every row: the passenger plus the *other* training passengers on the same ticket. ``transform``
    describes new passengers (held-out folds, predictions), none of whom is a training passenger, so a
    ticket held by k training passengers gives k + 1; ``fit_transform`` describes the training rows
    themselves, each of which is one of those k, so it gives k. (Counting a training row's own ticket
    for it but not for a new passenger, as ``fit().transform()`` did, made the feature mean one thing in
    training and another at prediction time.) Like scikit-learn's target encoder, ``fit_transform`` is
    therefore not ``fit().transform()``; pipelines call ``fit_transform``.
    """

    def __init__(self, *, interactions: bool = True) -> None:
        self.interactions = interactions

    def fit(self, X: Sequence[Mapping[str, Any]], y: ArrayLike | None = None) -> TitanicFeatures:
        passengers = _validated(X)
        titles = [passenger_title(p) for p in passengers]
        ages = [p["age"] for p in passengers if p["age"] is not None]
        if not ages:
            raise ValueError("the training passengers need at least one known age")
        self.age_median_ = float(np.median(ages))
        self.title_age_median_ = {
            title: float(
                np.median(
                    [
                        p["age"]
                        for p, t in zip(passengers, titles, strict=True)
                        if t == title and p["age"] is not None
                    ]
                )
            )
            for title in TITLES
            if any(t == title and p["age"] is not None for p, t in zip(passengers, titles, strict=True))
        }
        fares = [p["fare"] for p in passengers if p["fare"] is not None]
        self.fare_median_ = float(np.median(fares)) if fares else 0.0
        self.class_fare_median_ = {
            str(c): float(
                np.median([p["fare"] for p in passengers if p["pclass"] == c and p["fare"] is not None])
            )
            for c in (1, 2, 3)
            if any(p["pclass"] == c and p["fare"] is not None for p in passengers)
        }
        ports = Counter(p["embarked"] for p in passengers if p["embarked"] is not None)
        self.embarked_mode_ = ports.most_common(1)[0][0] if ports else "S"
        self.ticket_counts_ = dict(Counter(p["ticket"] for p in passengers if p["ticket"]))
        self.feature_names_ = self._names()
        self.n_features_out_ = len(self.feature_names_)
        return self

    def _names(self) -> list[str]:
        names = ["class_1", "class_2", "class_3", "female"]
        names += [f"title_{t}" for t in TITLES]
        names += ["age", "age_missing", "child", "sibsp", "parch", "family_size", "alone", "large_family"]
        names += ["log_fare", "log_fare_per_person", "ticket_group_size", "cabin_known"]
        names += [f"deck_{d}" for d in DECKS] + [f"embarked_{p}" for p in PORTS]
        if self.interactions:
            names += [f"{sex}_class_{c}" for sex in ("female", "male") for c in (1, 2, 3)]
            names += ["child_class_3", "female_large_family"]
        return names

    def transform(self, X: Sequence[Mapping[str, Any]]) -> NDArray[np.float64]:
        """Features of new passengers (none of them one of the training rows)."""
        self._check_is_fitted("feature_names_")
        return self._matrix(_validated(X), training_rows=False)

    def fit_transform(
        self, X: Sequence[Mapping[str, Any]], y: ArrayLike | None = None
    ) -> NDArray[np.float64]:
        """Fit, then the features of the training rows themselves (see the class docstring)."""
        self.fit(X, y)
        return self._matrix(_validated(X), training_rows=True)

    def _matrix(self, passengers: list[dict[str, Any]], *, training_rows: bool) -> NDArray[np.float64]:
        rows = [self._row(p, training_row=training_rows) for p in passengers]
        return np.array(rows, dtype=np.float64).reshape(len(passengers), -1)

    def group_size(self, ticket: str | None, *, training_row: bool) -> int:
        """The passenger plus the other training passengers holding ``ticket``."""
        if not ticket:
            return 1
        holders = int(self.ticket_counts_.get(ticket, 0))
        return max(holders, 1) if training_row else holders + 1

    def _row(self, p: Mapping[str, Any], *, training_row: bool) -> list[float]:
        title = passenger_title(p)
        age = p["age"]
        age_missing = age is None
        if age is None:
            age = self.title_age_median_.get(title, self.age_median_)
        fare = p["fare"]
        if fare is None:
            fare = self.class_fare_median_.get(str(p["pclass"]), self.fare_median_)
        group = self.group_size(p["ticket"], training_row=training_row)
        family = p["sibsp"] + p["parch"] + 1
        female = p["sex"] == "female"
        port = p["embarked"] or self.embarked_mode_
        deck = _deck(p["cabin"])
        child = age < 14
        row = [float(p["pclass"] == c) for c in (1, 2, 3)] + [float(female)]
        row += [float(title == t) for t in TITLES]
        row += [age, float(age_missing), float(child), p["sibsp"], p["parch"], family, float(family == 1)]
        row += [
            float(family >= 5),
            math.log1p(fare),
            math.log1p(fare / group),
            float(group),
            float(bool(p["cabin"])),
        ]
        row += [float(deck == d) for d in DECKS] + [float(port == q) for q in PORTS]
        if self.interactions:
            row += [
                float(female == (sex == "female") and p["pclass"] == c)
                for sex in ("female", "male")
                for c in (1, 2, 3)
            ]
            row += [float(child and p["pclass"] == 3), float(female and family >= 5)]
        return row

    def get_feature_names_out(self) -> list[str]:
        self._check_is_fitted("feature_names_")
        return list(self.feature_names_)


def _validated(X: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(X, Mapping):
        raise InvalidFields("passengers", "expected a list of passengers, got a single passenger")
    passengers = []
    for index, raw in enumerate(X):
        try:
            passengers.append(validate_passenger(raw))
        except InvalidFields as error:
            errors = {f"{index}.{field}": message for field, message in error.errors.items()}
            raise InvalidFields(f"{index}.{error.field}", error.message, errors=errors) from None
    if not passengers:
        raise InvalidFields("passengers", "expected at least one passenger")
    return passengers


def make_titanic_model(*, C: float = 1.0, penalty: str | None = "l2", l1_ratio: float = 0.5) -> Pipeline:
    """Feature engineering, standardization and logistic regression in one fit/predict pipeline."""
    return Pipeline(
        [
            ("features", TitanicFeatures()),
            ("scale", StandardScaler()),
            ("classifier", LogisticRegression(C=C, penalty=penalty, l1_ratio=l1_ratio)),  # type: ignore[arg-type]
        ]
    )


def predict_passenger(model: Pipeline, passenger: Mapping[str, Any]) -> PassengerPrediction:
    """Survival probability of one raw passenger; raises :class:`InvalidFields` naming the bad field."""
    clean = validate_passenger(passenger)
    probability = float(model.predict_proba([clean])[0, 1])
    contributions: dict[str, float] = {}
    intercept = 0.0
    classifier = model.steps[-1][1]
    features = model.steps[0][1]
    if isinstance(classifier, LogisticRegression) and isinstance(features, TitanicFeatures):
        values = model.transform_features([clean])[0]
        terms = classifier.coef_[0] * values
        order = np.argsort(-np.abs(terms), kind="stable")
        names = features.get_feature_names_out()
        contributions = {names[i]: float(terms[i]) for i in order}
        intercept = float(classifier.intercept_[0])
        raw = features.transform([clean])[0]
        own = {names[i]: float(raw[i]) for i in range(len(names))}
    else:
        own = {}
    return PassengerPrediction(
        survived=probability >= 0.5,
        probability=probability,
        contributions=contributions,
        intercept=intercept,
        features=own,
    )
