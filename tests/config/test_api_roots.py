import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_rest_api_root_lists_the_resources(reader_token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {reader_token}")

    response = client.get("/api/")

    assert response.status_code == 200
    assert set(response.json()) >= {"collections", "documents"}


def test_both_openapi_schemas_and_docs_pages_load(client):
    rest_schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    ninja_schema = client.get("/api/openapi.json")

    assert rest_schema.status_code == 200
    assert "/api/documents/" in rest_schema.json()["paths"]
    assert ninja_schema.status_code == 200
    assert ninja_schema.json()["info"]["title"] == "Knowledge base action API"
    assert client.get("/api/schema/docs/").status_code == 200
    assert client.get("/api/docs").status_code == 200


@pytest.mark.parametrize("scheme", ["Token", "Bearer"])
def test_one_token_works_on_both_apis(scheme, reader_token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {reader_token}")

    assert client.get("/api/collections/").status_code == 200
    assert client.get("/api/whoami").json() == {"username": "reader", "is_staff": False}


def test_a_wrong_token_is_401_on_both_apis():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    assert client.get("/api/collections/").status_code == 401
    assert client.get("/api/whoami").status_code == 401


def test_a_token_of_a_deactivated_account_is_refused(reader, reader_token):
    reader.is_active = False
    reader.save()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {reader_token}")

    assert client.get("/api/collections/").status_code == 401
    assert client.get("/api/whoami").status_code == 401
