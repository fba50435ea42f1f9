"""Schemathesis against the example application's /openapi.json, every plugin running.

Each operation gets bounded generated requests (valid and invalid ones), sent as the admin to
a real `nexus run`. The live event stream (endless by design) and the plugin operations (they
would disable the plugins under test; tests/reliability/test_hostile_input.py covers who may
call them) are left out.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from nexus.http.problems import PROBLEM_CONTENT_TYPE
from tests.reliability.conftest import ExampleServer

MAX_EXAMPLES = 25  # per operation and mode: ~1,300 requests, under 30 s here
EXCLUDED = frozenset({"/admin/api/events/stream", "/admin/api/plugins/{name}/{operation}"})


def _check(case: schemathesis.Case, token: str) -> None:
    response = case.call(headers={"Authorization": f"Bearer {token}"}, timeout=10)
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
    if response.status_code >= 400:
        assert response.headers["content-type"] == [PROBLEM_CONTENT_TYPE], response.text
        problem = response.json()
        assert problem["status"] == response.status_code, problem
        assert "traceback" not in problem, problem


def test_api_answers_generated_requests_without_server_errors(
    example_server: ExampleServer,
) -> None:
    """Generated requests get no 500, a documented status and schema, errors as problem+json."""
    api = schemathesis.openapi.from_url(f"{example_server.url}/openapi.json")
    token = example_server.admin_token
    failures: list[str] = []
    tested = 0
    for result in api.get_all_operations():
        operation = result.ok()
        if operation.path in EXCLUDED:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def fuzz(case: schemathesis.Case) -> None:
                _check(case, token)

            try:
                fuzz()
            except Unsatisfiable:
                continue  # no invalid request exists: the operation takes no input
            except Exception as exc:
                failures.append(
                    f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}"
                )
        tested += 1
    assert tested >= 20, f"only {tested} operations were fuzzed"
    assert not failures, "\n\n".join(failures)
