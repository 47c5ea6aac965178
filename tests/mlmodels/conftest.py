"""Models trained once per test session on tiny data, and fixtures that record them as active versions.

Training goes through the real service; only the core's training call is answered from the session's cache, so
that the tests about the API and the pages do not each spend seconds training the same tiny model."""

import pytest

TINY_MNIST = {
    "epochs": 2,
    "train_size": 600,
    "validation_size": 500,
    "overrides": {"hidden_layer_sizes": [32], "batch_size": 64},
}
TINY_TITANIC = {"n_splits": 2}


@pytest.fixture(scope="session")
def mnist_result():
    from mlmodels.core.training import train_mnist

    return train_mnist(
        arch="mlp",
        epochs=TINY_MNIST["epochs"],
        train_size=TINY_MNIST["train_size"],
        validation_size=TINY_MNIST["validation_size"],
        overrides={"hidden_layer_sizes": (32,), "batch_size": 64},
    )


@pytest.fixture(scope="session")
def titanic_result():
    from mlmodels.core.training import train_titanic

    return train_titanic(n_splits=2)


@pytest.fixture
def active_mnist(db, mnist_result, monkeypatch):
    from mlmodels import services
    from mlmodels.core import training

    monkeypatch.setattr(training, "train_mnist", lambda **options: mnist_result)
    return services.model_version_train_now(
        kind="mnist", architecture="mlp", options=TINY_MNIST, activate=True
    )


@pytest.fixture
def active_titanic(db, titanic_result, monkeypatch):
    from mlmodels import services
    from mlmodels.core import training

    monkeypatch.setattr(training, "train_titanic", lambda **options: titanic_result)
    return services.model_version_train_now(kind="titanic", options=TINY_TITANIC, activate=True)


@pytest.fixture
def signed_in(client, reader):
    client.force_login(reader)
    return client


@pytest.fixture
def staff_client(client, staff_user):
    staff_user.is_superuser = True
    staff_user.save()
    client.force_login(staff_user)
    return client


def drawn_digit_png(*, size=280, box=(20, 20, 110, 150), ink="black", paper="white", mode="RGB") -> bytes:
    """A '7' drawn with a thick pen inside `box` (left, top, right, bottom) of a `size` square picture."""
    import io

    from PIL import Image, ImageDraw

    image = Image.new(mode, (size, size), paper)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = box
    draw.line([(left, top), (right, top), (left + (right - left) // 3, bottom)], fill=ink, width=14)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
