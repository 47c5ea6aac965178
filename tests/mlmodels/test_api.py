import json

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from mlmodels import predictions, selectors, services
from mlmodels.models import ModelVersion
from tests.mlmodels.conftest import drawn_digit_png

pytestmark = pytest.mark.django_db

PASSENGER = {"pclass": 1, "sex": "female", "age": 38, "sibsp": 1, "parch": 0, "fare": 71.28, "embarked": "C"}


@pytest.fixture
def api(client, reader_token):
    def call(method, path, payload=None, **extra):
        headers = {"HTTP_AUTHORIZATION": f"Token {reader_token}", **extra}
        if method == "get":
            return client.get(f"/api/ml/{path}", payload or {}, **headers)
        if isinstance(payload, dict) and "image" in payload:
            return client.post(f"/api/ml/{path}", payload, **headers)
        return client.post(
            f"/api/ml/{path}",
            payload if isinstance(payload, (str, bytes)) else json.dumps(payload),
            content_type="application/json",
            **headers,
        )

    return call


def test_the_model_list_shows_versions_their_metrics_and_the_active_ones(api, active_titanic, active_mnist):
    services.model_version_request(kind="mnist", enqueue=False)

    response = api("get", "models")

    body = response.json()
    assert response.status_code == 200
    assert body["active"] == {"titanic": active_titanic.pk, "mnist": active_mnist.pk}
    assert [(v["kind"], v["version"], v["status"]) for v in body["versions"]] == [
        ("mnist", 2, "PENDING"),
        ("mnist", 1, "READY"),
        ("titanic", 1, "READY"),
    ]
    titanic = body["versions"][2]
    assert titanic["is_active"] and titanic["architecture"] == "logreg"
    assert titanic["key_metric"] == "CV accuracy"
    assert titanic["key_metric_value"] == pytest.approx(active_titanic.metrics["cv_accuracy_mean"])


def test_the_model_list_filters_by_kind_and_a_version_reads_in_full(api, active_mnist):
    listed = api("get", "models", {"kind": "titanic"}).json()
    detail = api("get", f"models/{active_mnist.pk}").json()

    assert listed["versions"] == [] and listed["active"]["mnist"] == active_mnist.pk
    assert len(detail["history"]) == 2 and len(detail["confusion_matrix"]) == 10
    assert detail["misclassified_count"] == len(active_mnist.misclassified_indices)
    assert detail["artifact_sha256"] == active_mnist.artifact_sha256
    assert api("get", "models/999999").status_code == 404


def test_a_failure_reason_is_shown_to_staff_only(client, reader_token, staff_token):
    services.model_version_train_now(kind="mnist", options={"overrides": {"bad_knob": 1}, "train_size": 100})

    as_reader = client.get("/api/ml/models", HTTP_AUTHORIZATION=f"Token {reader_token}").json()
    as_staff = client.get("/api/ml/models", HTTP_AUTHORIZATION=f"Token {staff_token}").json()

    assert as_reader["versions"][0]["error"] == "Training failed."
    assert "bad_knob" in as_staff["versions"][0]["error"]


def test_titanic_predict_gives_the_survival_probability_and_the_version(api, active_titanic):
    response = api("post", "titanic/predict", PASSENGER)

    body = response.json()
    assert response.status_code == 200
    expected = predictions.titanic_predict(passenger=PASSENGER)
    assert body["probability"] == pytest.approx(expected.probability)
    assert body["survived"] is (body["probability"] >= 0.5)
    assert body["predicted_class"] == int(body["survived"])
    assert body["label"] in ("survived", "did not survive")
    assert body["model"] == {
        "id": active_titanic.pk,
        "kind": "titanic",
        "version": 1,
        "architecture": "logreg",
    }
    assert 0 < len(body["contributions"]) <= 10


def test_unknown_age_fare_and_port_may_be_left_out(api, active_titanic):
    response = api("post", "titanic/predict", {"pclass": 3, "sex": "male", "sibsp": 0, "parch": 0})

    assert response.status_code == 200
    assert 0 < response.json()["probability"] < 0.5


def test_titanic_values_out_of_range_are_a_422_naming_each_field(api, active_titanic):
    response = api("post", "titanic/predict", {**PASSENGER, "pclass": 5, "age": 300, "sex": "unknown"})

    body = response.json()
    assert response.status_code == 422
    assert body["code"] == "PassengerInvalid"
    assert set(body["details"]["errors"]) == {"pclass", "age", "sex"}
    assert "between 1 and 3" in body["details"]["errors"]["pclass"]


@pytest.mark.parametrize(
    "payload",
    [
        {key: value for key, value in PASSENGER.items() if key != "sex"},
        {**PASSENGER, "Pclass": 1},
        {**PASSENGER, "pclass": "first"},
    ],
    ids=["missing field", "unknown field", "wrong type"],
)
def test_malformed_titanic_requests_are_a_422(api, active_titanic, payload):
    response = api("post", "titanic/predict", payload)

    assert response.status_code == 422


@pytest.mark.parametrize("path", ["titanic/predict", "mnist/predict"])
def test_a_body_that_is_not_json_is_a_400(api, path):
    response = api("post", path, "{not json")

    assert response.status_code == 400


def test_without_an_active_model_predictions_are_a_503_saying_why(api):
    titanic = api("post", "titanic/predict", PASSENGER)
    mnist = api("post", "mnist/predict", {"pixels": [0] * 784})

    assert titanic.status_code == mnist.status_code == 503
    assert "No Titanic survival model is active yet" in titanic.json()["detail"]
    assert mnist.json()["code"] == "NoActiveModel"


def test_anonymous_callers_get_a_401(client):
    assert client.get("/api/ml/models").status_code == 401
    assert client.post("/api/ml/mnist/predict", {}, content_type="application/json").status_code == 401


def test_mnist_predict_reads_784_pixels_like_the_model_does(api, active_mnist):
    images, _ = selectors.mnist_test_set()
    digit = images[0]

    response = api("post", "mnist/predict", {"pixels": digit.reshape(-1).tolist()})

    body = response.json()
    assert response.status_code == 200
    _, model = selectors.active_model(kind="mnist")
    expected = model.predict_proba(digit.reshape(1, 784).astype(np.float32) / 255)[0]
    assert body["probabilities"] == pytest.approx(expected.tolist(), abs=1e-6)
    assert body["digit"] == int(np.argmax(expected))
    assert body["probability"] == pytest.approx(float(expected.max()), abs=1e-6)
    assert body["architecture"] == "mlp"
    assert body["model"]["id"] == active_mnist.pk
    assert body["input"]["source"] == "pixels" and body["input"]["pixels"] == digit.reshape(-1).tolist()


def test_pixels_may_be_sent_scaled_to_one(api, active_mnist):
    images, _ = selectors.mnist_test_set()
    digit = images[1].reshape(-1)

    in_255 = api("post", "mnist/predict", {"pixels": digit.tolist()}).json()
    in_1 = api("post", "mnist/predict", {"pixels": (digit / 255).tolist(), "scale": 1}).json()

    assert in_1["probabilities"] == pytest.approx(in_255["probabilities"], abs=1e-6)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"pixels": [0] * 783}, "Expected 784 pixel values"),
        ({"pixels": [0] * 700 + [256] + [0] * 83}, "pixel 700 is 256"),
        ({"pixels": [0.5] * 783 + [2], "scale": 1}, "between 0 and 1"),
        ({"pixels": [0] * 783 + [-1]}, "pixel 783 is -1"),
        ({"pixels": [0] * 784, "scale": 100}, "scale"),
        ({"pixels": ["dark"] * 784}, "pixels"),
        ({}, "pixels"),
    ],
    ids=["too short", "above 255", "above 1", "negative", "unknown scale", "not numbers", "missing"],
)
def test_bad_pixels_are_a_422_with_the_reason(api, active_mnist, payload, message):
    response = api("post", "mnist/predict", payload)

    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_an_uploaded_drawing_is_centred_before_the_model_reads_it(api, active_mnist):
    png = drawn_digit_png(box=(150, 20, 260, 160))

    response = api("post", "mnist/predict", {"image": SimpleUploadedFile("seven.png", png, "image/png")})

    body = response.json()
    assert response.status_code == 200
    assert body["input"]["source"] == "image" and body["input"]["inverted"] is True
    assert body["input"]["center_of_mass"] == pytest.approx([14.0, 14.0], abs=0.75)
    assert body["input"]["ink_box"][1] >= 140  # found where it was drawn, on the right
    seen = np.asarray(body["input"]["pixels"]).reshape(28, 28)
    assert seen[:, :3].max() == 0 and seen[:, -3:].max() == 0
    assert sum(body["probabilities"]) == pytest.approx(1.0)
    _, model = selectors.active_model(kind="mnist")
    expected = model.predict_proba(seen.reshape(1, 784).astype(np.float32) / 255)[0]
    assert body["probabilities"] == pytest.approx(expected.tolist(), abs=2e-3)


def test_a_file_that_is_not_a_picture_is_a_422(api, active_mnist):
    response = api("post", "mnist/predict", {"image": SimpleUploadedFile("notes.txt", b"just some text")})

    assert response.status_code == 422
    assert response.json()["code"] == "ImageInvalid"


def test_a_multipart_request_without_the_image_field_is_a_422(api, active_mnist):
    response = api("post", "mnist/predict", {"image": "", "picture": SimpleUploadedFile("d.png", b"x")})

    assert response.status_code == 422
    assert "field named 'image'" in response.json()["detail"]


def test_a_picture_above_the_size_limit_is_a_413(api, active_mnist, settings):
    settings.MLMODELS_MAX_IMAGE_BYTES = 500

    response = api("post", "mnist/predict", {"image": SimpleUploadedFile("big.png", drawn_digit_png())})

    assert response.status_code == 413


def test_the_prediction_uses_the_version_active_at_the_time(api, active_mnist):
    images, _ = selectors.mnist_test_set()
    newer = services.model_version_train_now(kind="mnist", options={"train_size": 600}, activate=True)

    response = api("post", "mnist/predict", {"pixels": images[0].reshape(-1).tolist()})

    assert response.json()["model"]["version"] == newer.version == 2
    assert ModelVersion.objects.get(pk=active_mnist.pk).is_active is False


def test_the_openapi_document_describes_both_ways_to_send_a_digit(client, reader):
    client.force_login(reader)

    spec = client.get("/api/openapi.json").json()

    body = spec["paths"]["/api/ml/mnist/predict"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert body["multipart/form-data"]["schema"]["required"] == ["image"]
    assert {"/api/ml/models", "/api/ml/titanic/predict"} <= set(spec["paths"])
