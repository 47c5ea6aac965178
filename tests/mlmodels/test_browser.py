"""The digit page in a real browser (headless Chromium): draw a digit with the mouse and watch the prediction
arrive from the API. CI sets KB_REQUIRE_BROWSER=1, where a missing browser fails instead of skipping."""

import pytest

from mlmodels import services
from mlmodels.core import training
from tests.factories import UserFactory
from tests.mlmodels.conftest import TINY_MNIST

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def committed_mnist(transactional_db, mnist_result, monkeypatch):
    monkeypatch.setattr(training, "train_mnist", lambda **options: mnist_result)
    return services.model_version_train_now(kind="mnist", options=TINY_MNIST)


def test_drawing_a_digit_shows_the_prediction_its_probabilities_and_what_the_model_read(
    chromium, live_server, committed_mnist
):
    UserFactory(username="ada")
    page = chromium.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{live_server.url}/accounts/login/?next=/models/digits/")
    page.get_by_label("User name").fill("ada")
    page.get_by_label("Password").fill("a-long-test-password")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/models/digits/")

    pad = page.locator("canvas[data-pad]")
    pad.wait_for(state="visible")
    box = pad.bounding_box()
    assert box is not None
    with page.expect_response(lambda response: response.url.endswith("/api/ml/mnist/predict")) as answered:
        page.mouse.move(box["x"] + 60, box["y"] + 50)
        page.mouse.down()
        for x, y in [(200, 50), (180, 110), (150, 170), (120, 240)]:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=8)
        page.mouse.up()

    assert answered.value.status == 200
    body = answered.value.json()
    page.wait_for_function("document.querySelector('[data-answer]').textContent !== '?'")
    assert page.inner_text("[data-answer]") == str(body["digit"])
    assert f"mnist v{committed_mnist.version} (mlp)" in page.inner_text("[data-status]")
    assert page.locator("ol.bars li.best").count() == 1
    assert page.inner_text("ol.bars li.best .pct") == f"{100 * body['probability']:.1f} %"
    assert page.locator("canvas[data-seen]").is_visible()
    assert body["input"]["center_of_mass"][0] == pytest.approx(14, abs=1)

    page.get_by_role("button", name="Clear").click()
    assert page.inner_text("[data-answer]") == "?"
    assert errors == []


OVERFLOWING_TABLES = """Array.from(document.querySelectorAll('table')).filter(
    table => table.getBoundingClientRect().right > table.parentElement.getBoundingClientRect().right + 1
).length"""


def test_tables_fit_their_pages_at_1280_pixels(chromium, live_server, committed_mnist, transactional_db):
    from django.core.management import call_command

    from knowledge import services as knowledge_services
    from tests.factories import CollectionFactory

    call_command("train_titanic", "--activate", verbosity=0)
    collection = CollectionFactory(slug="wide", name="A collection with a long enough name")
    knowledge_services.document_add(
        collection=collection, name="a-rather-long-file-name-for-a-document.md", content=b"# Title\n\nText."
    )
    UserFactory(username="root", is_staff=True, is_superuser=True)
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/accounts/login/?next=/models/")
    page.get_by_label("User name").fill("root")
    page.get_by_label("Password").fill("a-long-test-password")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/models/")

    overflowing = {}
    for path in [
        "/models/",
        "/admin/knowledge/document/",
        "/admin/knowledge/collection/",
        "/admin/mlmodels/modelversion/",
    ]:
        page.goto(f"{live_server.url}{path}")
        overflowing[path] = page.evaluate(OVERFLOWING_TABLES)

    assert overflowing == dict.fromkeys(overflowing, 0)
