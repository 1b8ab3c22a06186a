"""/api/v1/openapi.json: a valid OpenAPI 3 document that lists every route and describes
what the endpoints really return."""

from __future__ import annotations

import io
import re

import pytest
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

PUBLIC = {"/api/v1/health", "/api/v1/openapi.json"}


@pytest.fixture
def document(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def _check(document, instance, schema_name):
    """Validates `instance` against a component schema (OpenAPI 3.0 dialect: nullable)."""
    root = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
    errors = list(OAS30Validator(root).iter_errors(instance))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def _response_schema(document, path, method, status):
    response = document["paths"][path][method]["responses"][str(status)]
    if "$ref" in response:
        response = document["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    ref = response["content"]["application/json"]["schema"]["$ref"]
    return ref.rsplit("/", 1)[1]


def test_the_document_is_valid_openapi_3(document):
    validate(document)
    assert document["openapi"].startswith("3.")


def test_every_api_route_is_documented_with_its_methods(app, document):
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        if path == "/api/v1/openapi.json":
            continue
        assert path in document["paths"], path
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in document["paths"][path], (method, path)


def test_protected_operations_document_401_and_public_ones_need_no_key(document):
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            if path in PUBLIC:
                assert operation.get("security") == [], path
            else:
                assert "401" in operation["responses"], (method, path)
    assert document["security"] == [{"bearerAuth": []}]


def test_campaign_creation_documents_json_and_multipart_bodies(document):
    for path in ("/api/v1/campaigns", "/api/v1/campaigns/{campaign_id}/recipients"):
        content = document["paths"][path]["post"]["requestBody"]["content"]
        assert set(content) == {"application/json", "multipart/form-data"}
        upload = content["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]
        assert document["components"]["schemas"][upload]["properties"]["file"]["format"] == "binary"
    create = document["components"]["schemas"]["CampaignCreate"]
    assert {"name", "subject", "body_text", "recipients", "window"} <= set(create["properties"])


def test_error_answers_use_the_error_envelope(document):
    responses = document["paths"]["/api/v1/accounts/{account_id}"]["patch"]["responses"]
    assert {"401", "404", "409", "415", "422"} <= set(responses)
    error = document["components"]["responses"]["NOT_FOUND"]["content"]["application/json"]
    assert error["schema"]["$ref"].endswith("/Error")


def test_real_responses_match_their_documented_schemas(api, client, document, factory):
    account = factory.create_account(tags=["eu"])
    created = api.post(
        "/api/v1/accounts",
        json={"name": "g", "provider": "gmail", "email": "g@x.example", "password": "pw"},
    )
    campaign = api.post(
        "/api/v1/campaigns",
        data={
            "name": "c",
            "subject": "Hi {{ first_name }}",
            "body_text": "Hello",
            "window": '{"timezone": "UTC", "days": [0, 1], "start_hour": 8, "end_hour": 18}',
            "account_ids": str(account.id),
            "file": (io.BytesIO(b"email,first_name\na@x.example,A\nbad,B\n"), "l.csv"),
        },
        content_type="multipart/form-data",
    )
    campaign_id = campaign.get_json()["id"]
    suppression = api.post("/api/v1/suppressions", json={"domain": "spam.example"})
    campaign_path = f"/api/v1/campaigns/{campaign_id}"
    more = {"recipients": [{"email": "b@x.example", "first_name": "B"}]}
    answers = [
        (created, 201),
        (api.get("/api/v1/accounts"), 200),
        (api.post(f"/api/v1/accounts/{account.id}/pause", json={"reason": "x"}), 200),
        (campaign, 201),
        (api.get(campaign_path), 200),
        (api.get("/api/v1/campaigns"), 200),
        (api.post(f"{campaign_path}/recipients", json=more), 201),
        (api.get(f"{campaign_path}/recipients?limit=1"), 200),
        (api.post(f"{campaign_path}/start"), 200),
        (suppression, 201),
        (api.get("/api/v1/suppressions"), 200),
        (api.get("/api/v1/campaigns/999"), 404),
        (api.post(f"{campaign_path}/start"), 409),
        (api.post("/api/v1/accounts", json={"name": 1}), 422),
        (client.get("/api/v1/accounts"), 401),
        (client.get("/api/v1/health"), 200),
    ]
    for response, status in answers:
        path, method = _documented(response)
        assert response.status_code == status, (path, method, response.get_json())
        _check(document, response.get_json(), _response_schema(document, path, method, status))


def _documented(response):
    """The documented path and method of the request behind a test response."""
    path = re.sub(r"/accounts/\d+", "/accounts/{account_id}", response.request.path)
    path = re.sub(r"/campaigns/\d+", "/campaigns/{campaign_id}", path)
    return path, response.request.method.lower()


def test_the_documented_account_never_mentions_the_password(document):
    account = document["components"]["schemas"]["Account"]
    assert "password" not in account["properties"]
    assert "password" in document["components"]["schemas"]["AccountCreate"]["properties"]
