import json

import pytest
from django.db import OperationalError
from django.test import RequestFactory
from psycopg_pool import PoolTimeout

from config.middleware import DatabaseBusyMiddleware

pytestmark = pytest.mark.django_db


def pool_timeout() -> OperationalError:
    """The error Django raises when psycopg's pool gave no connection in time."""
    try:
        try:
            raise PoolTimeout("couldn't get a connection after 10.00 sec")
        except PoolTimeout as exc:
            raise OperationalError(str(exc)) from exc
    except OperationalError as error:
        return error


def test_an_api_request_that_gets_no_database_connection_in_time_is_told_to_retry(
    client, reader_token, monkeypatch
):
    def busy(**kwargs):
        raise pool_timeout()

    monkeypatch.setattr("chat.services.question_ask_stream", busy)

    response = client.post(
        "/api/chat/ask",
        {"question": "How do I take a backup?"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {reader_token}",
    )

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["code"] == "ServiceUnavailable"


def test_a_page_request_gets_a_plain_503_and_other_database_errors_stay_server_errors():
    middleware = DatabaseBusyMiddleware(lambda request: None)
    page = RequestFactory().get("/conversations/1/")

    busy = middleware.process_exception(page, pool_timeout())
    other = middleware.process_exception(page, OperationalError("server closed the connection unexpectedly"))

    assert busy.status_code == 503 and busy["Content-Type"].startswith("text/plain")
    assert b"Try again" in busy.content
    assert other is None


def test_the_chat_page_script_gets_a_json_error_it_can_show_in_place():
    middleware = DatabaseBusyMiddleware(lambda request: None)
    stream = RequestFactory().post("/chat/ask/stream/", HTTP_ACCEPT="text/event-stream")

    response = middleware.process_exception(stream, pool_timeout())

    assert response.status_code == 503 and response["Content-Type"] == "application/json"
    assert "Try again" in json.loads(response.content)["detail"]
