import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from mlmodels import predictions, selectors, services
from mlmodels.models import ModelVersion
from tests.mlmodels.conftest import drawn_digit_png

pytestmark = pytest.mark.django_db

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "url",
    [
        "/models/",
        "/models/digits/",
        "/models/titanic/",
        "/models/versions/1/",
        "/models/versions/1/curves.png",
        "/models/compare/mnist/",
        "/models/mnist/mistakes/",
        "/models/mnist/test-digits/3.png",
    ],
)
def test_every_model_page_needs_a_sign_in(client, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_the_index_lists_the_versions_of_each_model(signed_in, active_titanic, active_mnist):
    services.model_version_request(kind="mnist", enqueue=False)

    page = signed_in.get(reverse("mlmodels:index")).content.decode()

    assert f'href="/models/versions/{active_titanic.pk}/"' in page
    assert "Waiting for a worker" in page
    assert "data-refresh-seconds" in page  # reloads itself while a version waits or trains


def test_the_digit_page_has_a_canvas_and_an_upload_form_for_browsers_without_javascript(
    signed_in, active_mnist
):
    page = signed_in.get(reverse("mlmodels:digits")).content.decode()

    assert '<canvas class="pad" width="280" height="280"' in page
    assert 'data-api="/api/ml/mnist/predict"' in page
    assert 'enctype="multipart/form-data"' in page and 'name="image"' in page
    assert "/static/mlmodels/mlmodels.js" in page
    assert str(active_mnist) in page
    assert "http://" not in page and "https://" not in page


def test_uploading_a_picture_shows_the_digit_its_probabilities_and_what_the_model_read(
    signed_in, active_mnist
):
    png = drawn_digit_png()

    response = signed_in.post(reverse("mlmodels:digits"), {"image": SimpleUploadedFile("d.png", png)})

    page = response.content.decode()
    assert response.status_code == 200
    assert re.search(r'class="answer-digit" data-answer>\d<', page)
    assert len(re.findall(r'data-bar-row="\d"', page)) == 10
    assert 'class="best"' in page
    assert 'src="data:image/png;base64,' in page


def test_uploading_something_that_is_not_a_picture_explains_the_problem(signed_in, active_mnist):
    response = signed_in.post(reverse("mlmodels:digits"), {"image": SimpleUploadedFile("a.txt", b"hello")})

    assert response.status_code == 422
    assert "not a picture" in response.content.decode()


def test_the_digit_page_says_when_no_model_is_active(signed_in):
    response = signed_in.post(
        reverse("mlmodels:digits"), {"image": SimpleUploadedFile("d.png", drawn_digit_png())}
    )

    assert response.status_code == 503
    assert "No MNIST digits model is active yet" in response.content.decode()


def test_the_titanic_form_gives_the_survival_probability_and_its_reasons(signed_in, active_titanic):
    fields = {"pclass": "1", "sex": "female", "age": "29", "sibsp": "0", "parch": "0", "fare": "211.34"}

    response = signed_in.post(
        reverse("mlmodels:titanic"), {**fields, "embarked": "S", "name": "", "cabin": "B5"}
    )

    page = response.content.decode()
    assert response.status_code == 200
    probability = predictions.titanic_predict(
        passenger={**fields, "embarked": "S", "cabin": "B5"}
    ).probability
    assert f"{100 * probability:.1f} %" in page
    assert "What weighed most" in page and "a woman" in page


def test_a_mans_reasons_are_said_of_a_man_not_as_a_woman_he_is_not(signed_in, active_titanic):
    man = {
        "pclass": "3",
        "sex": "male",
        "age": "29",
        "sibsp": "0",
        "parch": "0",
        "fare": "7.25",
        "embarked": "S",
    }

    page = signed_in.post(reverse("mlmodels:titanic"), {**man, "name": "", "cabin": ""}).content.decode()

    reasons = page.split("What weighed most")[1].split("</ul>")[0]
    assert "a man" in reasons
    assert "a woman" not in reasons and "first class" not in reasons.replace("not first class", "")
    assert "age 29" in reasons or "age" not in reasons


def test_the_titanic_form_marks_each_invalid_field(signed_in, active_titanic):
    response = signed_in.post(
        reverse("mlmodels:titanic"),
        {
            "pclass": "1",
            "sex": "female",
            "age": "-4",
            "sibsp": "two",
            "parch": "0",
            "fare": "",
            "embarked": "",
        },
    )

    page = response.content.decode()
    assert response.status_code == 422
    assert page.count('aria-invalid="true"') == 2
    assert 'value="-4"' in page  # what was typed is kept


def test_the_version_page_shows_metrics_data_set_hyperparameters_and_pictures(signed_in, active_mnist):
    page = signed_in.get(reverse("mlmodels:version", args=[active_mnist.pk])).content.decode()

    assert "Test accuracy" in page
    assert "first 600 training digits" in page
    assert "hidden_layer_sizes" in page
    assert f'src="/models/versions/{active_mnist.pk}/curves.png"' in page
    assert f'src="/models/versions/{active_mnist.pk}/confusion.png"' in page
    assert f"/models/mnist/mistakes/?version={active_mnist.pk}" in page


def test_the_titanic_version_page_shows_its_coefficients(signed_in, active_titanic):
    page = signed_in.get(reverse("mlmodels:version", args=[active_titanic.pk])).content.decode()

    assert f'src="/models/versions/{active_titanic.pk}/coefficients.png"' in page
    assert "Cross-validated accuracy" in page


def test_the_titanic_version_page_shows_the_nested_accuracy_brier_score_and_calibration(
    signed_in, active_titanic
):
    metrics, calibration = active_titanic.metrics, active_titanic.extra["calibration"]

    page = signed_in.get(reverse("mlmodels:version", args=[active_titanic.pk])).content.decode()
    picture = signed_in.get(reverse("mlmodels:version_plot", args=[active_titanic.pk, "calibration"]))

    assert "Nested cross-validated accuracy" in page
    assert f"{100 * metrics['nested_cv_accuracy_mean']:.2f} %" in page
    assert "Brier score (out of fold)" in page and f"{metrics['oof_brier']:.4f}" in page
    assert f'src="/models/versions/{active_titanic.pk}/calibration.png"' in page
    table = page.split('data-table="calibration"')[1].split("</table>")[0]
    assert table.count("<tr>") == len(calibration["count"]) + 1  # a header and one row per bin
    assert f"<td>{calibration['count'][0]}</td><td>{100 * calibration['predicted'][0]:.1f} %</td>" in table
    assert picture.status_code == 200 and picture.content.startswith(PNG_SIGNATURE)


def test_a_failed_version_page_shows_the_reason(signed_in):
    failed = services.model_version_train_now(
        kind="mnist", options={"overrides": {"bad": 1}, "train_size": 100}
    )

    page = signed_in.get(reverse("mlmodels:version", args=[failed.pk])).content.decode()

    assert "Failed" in page and "no parameter &#x27;bad&#x27;" in page


def test_a_missing_version_is_a_404(signed_in):
    assert signed_in.get(reverse("mlmodels:version", args=[999999])).status_code == 404


@pytest.mark.parametrize("name", ["curves", "confusion"])
def test_plots_are_png_with_caching_headers(signed_in, active_mnist, name):
    url = reverse("mlmodels:version_plot", args=[active_mnist.pk, name])

    response = signed_in.get(url)
    again = signed_in.get(url, HTTP_IF_NONE_MATCH=response["ETag"])

    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response.content.startswith(PNG_SIGNATURE)
    assert response["Cache-Control"] == "private, max-age=86400"
    assert again.status_code == 304


def test_a_training_version_has_live_curves_that_are_not_cached(signed_in):
    version = services.model_version_request(kind="mnist", enqueue=False)
    ModelVersion.objects.filter(pk=version.pk).update(
        status="TRAINING",
        history=[{"epoch": 1, "loss": 0.5, "accuracy": 0.8, "val_loss": 0.4, "val_accuracy": 0.85}],
    )

    response = signed_in.get(reverse("mlmodels:version_plot", args=[version.pk, "curves"]))

    assert response.status_code == 200 and response.content.startswith(PNG_SIGNATURE)
    assert response["Cache-Control"] == "private, no-cache"


def test_a_picture_a_version_does_not_have_is_a_404(signed_in, active_mnist):
    assert (
        signed_in.get(reverse("mlmodels:version_plot", args=[active_mnist.pk, "coefficients"])).status_code
        == 404
    )


def test_the_mistakes_page_shows_the_wrong_test_digits_with_both_labels_page_by_page(signed_in, active_mnist):
    response = signed_in.get(reverse("mlmodels:mistakes"))

    page = response.content.decode()
    first = active_mnist.misclassified_indices[0]
    assert response.status_code == 200
    assert page.count('<li data-index="') == 60
    assert f'src="/models/mnist/test-digits/{first}.png"' in page
    assert f"read as {active_mnist.misclassified_predicted[0]}" in page
    assert "Page 1 of" in page and "page=2" in page


def test_the_mistakes_page_filters_by_true_and_predicted_digit(signed_in, active_mnist):
    mistakes = list(
        zip(active_mnist.misclassified_indices, active_mnist.misclassified_predicted, strict=True)
    )
    index, predicted = mistakes[0]
    _, labels = selectors.mnist_test_set()
    true = int(labels[index])
    expected = sum(1 for i, p in mistakes if int(labels[i]) == true and p == predicted)

    page = signed_in.get(
        reverse("mlmodels:mistakes"), {"true": true, "predicted": predicted}
    ).content.decode()

    assert page.count('<li data-index="') == min(expected, 60)
    assert f"Showing the {expected} that are a {true} read as {predicted}" in page


def test_the_mistakes_page_says_when_there_is_no_active_model(signed_in):
    response = signed_in.get(reverse("mlmodels:mistakes"))

    assert response.status_code == 503
    assert "No MNIST digits model is active yet" in response.content.decode()


def test_a_test_digit_is_a_png_cached_for_good(signed_in):
    response = signed_in.get(reverse("mlmodels:mnist_digit", args=[7]))

    assert response.content.startswith(PNG_SIGNATURE)
    assert "immutable" in response["Cache-Control"]
    assert signed_in.get(reverse("mlmodels:mnist_digit", args=[10000])).status_code == 404


def test_the_comparison_puts_versions_side_by_side(signed_in, active_mnist):
    other = services.model_version_train_now(kind="mnist", options={"train_size": 600})

    page = signed_in.get(reverse("mlmodels:compare", args=["mnist"])).content.decode()

    assert "Recall per class" in page
    assert f'src="/models/versions/{active_mnist.pk}/confusion.png"' in page
    assert f'src="/models/versions/{other.pk}/confusion.png"' in page
    assert signed_in.get(reverse("mlmodels:compare", args=["rockets"])).status_code == 404


def test_the_digits_page_says_a_model_is_being_trained_instead_of_asking_to_train_one(signed_in, staff_user):
    from mlmodels.models import ModelVersion

    ModelVersion.objects.filter(kind="mnist").delete()
    training = services.model_version_request(kind="mnist", architecture="mlp", enqueue=False)
    ModelVersion.objects.filter(pk=training.pk).update(status=ModelVersion.Status.TRAINING, progress=0.4)

    page = signed_in.get(reverse("mlmodels:digits")).content.decode()

    assert "is being trained (40 % done)" in page
    assert "Train one in" not in page and "Staff can train one" not in page
