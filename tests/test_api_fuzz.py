"""A bounded schemathesis run over /api/v1, in-process (WSGI) with an API key: whatever a
generated client or a fuzzer sends from the OpenAPI document, within its rules or just
outside them (schemathesis' positive and negative modes), the API never answers 5xx.

Driven through schemathesis' Python API inside one test rather than its pytest plugin,
whose lazy fixture loader does not run under this pytest."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

MAX_EXAMPLES = 15  # per operation and mode: the whole run stays well under a minute
# Path values naming real rows, so bodies and queries reach the code behind the lookup
# (each operation also runs with generated paths).
REAL_PATHS = {
    "account_id": 1,
    "campaign_id": 1,
    "scope": "recipient_domain",
    "key": "x.example",
    "value": "x.example",
    "client_id": 1,
}


def _operations(app: Any) -> list[Any]:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    return [result.ok() for result in schema.get_all_operations()]


@pytest.fixture
def admin_key(app: Any) -> str:
    from app.api.auth import create_key
    from app.db import unit_of_work

    with app.app_context(), unit_of_work() as session:
        _, key = create_key(session, "admin", is_admin=True)
    return key


# An admin key also reaches what other keys hear 403 for before their body is read
# (creating, changing, pausing clients).
@pytest.mark.parametrize("key", ["api_key", "admin_key"])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_generated_request_gets_a_5xx(
    app: Any, request: pytest.FixtureRequest, factory: Any, mode, key: str
) -> None:
    factory.create_account()  # id 1: some generated ids name a real row
    factory.create_campaign()
    headers = {"Authorization": f"Bearer {request.getfixturevalue(key)}"}
    operations = _operations(app)
    assert len(operations) >= 20

    skipped: list[str] = []
    strategies = []
    for operation in operations:
        strategies.append((operation, operation.as_strategy(generation_mode=mode)))
        names = [p.name for p in operation.path_parameters]
        if names:
            fixed = {name: REAL_PATHS[name] for name in names}
            strategies.append(
                (operation, operation.as_strategy(generation_mode=mode, path_parameters=fixed))
            )
    for operation, strategy in strategies:

        @given(case=strategy)
        @hypothesis_settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            response = case.call(headers=headers)
            case.validate_response(response, checks=[not_a_server_error])

        try:
            run()
        except Unsatisfiable:
            # Nothing to negate (no parameters or body, e.g. GET /health).
            assert mode is GenerationMode.NEGATIVE, operation.label
            skipped.append(operation.label)
    assert len(skipped) < len(strategies) / 2, skipped
