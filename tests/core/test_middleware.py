import pytest
from django.test import RequestFactory

from core.errors import InvalidInput, ObjectNotFound
from core.middleware import PageErrorMiddleware

pytestmark = pytest.mark.django_db


def _middleware() -> PageErrorMiddleware:
    return PageErrorMiddleware(lambda request: pytest.fail("the view is not called here"))


def test_a_not_found_error_out_of_a_page_view_is_the_sites_404_page(settings):
    settings.DEBUG = False
    request = RequestFactory().get("/conversations/1/")

    response = _middleware().process_exception(request, ObjectNotFound("No such conversation."))

    assert response is not None
    assert response.status_code == 404
    assert b"There is nothing at this address" in response.content


def test_under_debug_the_not_found_error_is_djangos_404_with_its_message(settings):
    settings.DEBUG = True
    request = RequestFactory().get("/conversations/1/")

    response = _middleware().process_exception(request, ObjectNotFound("No such conversation."))

    assert response is not None
    assert response.status_code == 404
    assert b"No such conversation." in response.content


def test_other_errors_are_left_to_the_view_and_django(settings):
    request = RequestFactory().get("/conversations/1/")

    response = _middleware().process_exception(request, InvalidInput("Bad."))

    assert response is None


def test_a_page_view_s_not_found_error_reaches_the_visitor_as_the_404_page(client, reader):
    client.force_login(reader)

    response = client.get("/conversations/999999999/")

    assert response.status_code == 404
    assert b"There is nothing at this address" in response.content
