"""Schemathesis hooks for tests/test_contract.py (loaded through SCHEMATHESIS_HOOKS)."""

import json
from typing import Any

import schemathesis


def _details(response: Any) -> list[dict[str, Any]]:
    try:
        detail = json.loads(response.content)["detail"]
    except (ValueError, KeyError, TypeError):
        return []
    return detail if isinstance(detail, list) else []


@schemathesis.hook
def filter_failure(ctx: Any, failure: Any, case: Any, response: Any) -> bool:
    """Every failure counts but one: a schema-valid spec refused with 422 because it exceeds a
    resource limit (DECAYLAB_MAX_PARAMETERS, _MAX_MEMORY_BYTES, _MAX_RUN_DISK_BYTES). Those bound
    products of fields (parameters from hidden_sizes, memory from sizes times batch) and are
    deployment settings, which a static JSON Schema cannot express; the document says so in
    the 422's description and the answer names the setting."""
    details = _details(response)
    limited = bool(details) and all(e.get("type") == "resource_limit" for e in details)
    return not (response.status_code == 422 and limited)
