"""Schemathesis hooks for the order service's OpenAPI fuzz run (scripts/fuzz.sh).

`positive_data_acceptance` expects every schema-valid request to be accepted. One answer
to a schema-valid request depends on state the schema cannot express: an Idempotency-Key
already used for a *different* order is refused with 422 `idempotency_key_reused` (the
IETF Idempotency-Key draft's status for a reused key). The fuzzer reuses its generated
keys across bodies, so this check is the built-in one with exactly that answer allowed:
any other rejection of valid data, including every other 422, still fails the run.
"""

import json

import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance


def _is_key_reuse(response) -> bool:
    if response.status_code != 422:
        return False
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("error") == "idempotency_key_reused"


@schemathesis.check
def positive_data_acceptance_with_idempotency(ctx, response, case):
    """Schema-valid requests are accepted, unless their Idempotency-Key was reused."""
    if _is_key_reuse(response) and "idempotency-key" in {
        name.lower() for name in (case.headers or {})
    }:
        return None
    return positive_data_acceptance(ctx, response, case)
