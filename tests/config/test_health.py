import pytest

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_touching_services(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_database_and_broker_ok(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_names_the_broker_when_it_is_unreachable(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("unreachable")


def test_readyz_names_the_database_when_it_is_unreachable(client, monkeypatch):
    import psycopg

    from config import health

    def refused(**params):
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(health.psycopg, "connect", refused)

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "unreachable: OperationalError"


def test_readyz_names_a_file_broker_folder_it_cannot_create(client, settings, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    settings.CELERY_BROKER_URL = "filesystem://localhost/"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(blocker / "queue")}

    response = client.get("/readyz")

    assert response.status_code == 503
    assert "cannot be created" in response.json()["checks"]["broker"]
