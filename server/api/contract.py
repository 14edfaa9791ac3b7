"""What the OpenAPI document says beyond the routes' declarations, for contract testers and
generated clients: explicit links between operations, and the 422 error types of the rules a
JSON Schema cannot state.

- **Links.** A new or read sweep leads to every operation on it (its views, cancel, delete)
  and to its first member; a run leads to its sweep (a tester follows that link only when
  ``sweep_id`` is not null, so a lone run leads nowhere). Stated here, the links are the API's
  meaning, not what a tool guesses from field names.
- **Error types.** ``POST /runs`` and ``POST /sweeps`` refuse a schema-valid body for rules
  across fields: ``resource_limit`` (server/store/limits.py: parameters, memory, disk, and a
  sweep's member count) and ``dataset_size`` (CIFAR-10 has 50,000/10,000 samples; a sweep's
  base and grid are checked per member, as the grid may vary the dataset)."""

from typing import Any

from server.store.limits import DATASET_SIZE, RESOURCE_LIMIT

SWEEP = "/sweeps/{sweep_id}"
# Where a sweep's id is: the operation's 2xx answer is a SweepOut.
SWEEP_SOURCES = {("/sweeps", "post"), (SWEEP, "get"), (f"{SWEEP}/cancel", "post")}
# Where a run's sweep is: the operation's 2xx answer is a RunOut.
RUN_SOURCES = {("/runs/{run_id}", "get"), ("/runs/{run_id}", "patch")}
FIRST_TOLERANCE = "$response.body#/runs/0/spec/tolerances/0"
# A difference needs two groups: by name, each member is one (members are named after their
# grid values), so groups 0 and 1 exist whenever the sweep has two members.
DIFFERENCE = {"query.a": 0, "query.b": 1, "query.by": "name", "query.tol": FIRST_TOLERANCE}

ERROR_CTX = {
    RESOURCE_LIMIT: {
        "type": "object",
        "properties": {
            "estimate": {"type": "integer", "description": "What the body would take."},
            "limit": {"type": "integer", "description": "The setting's value."},
            "setting": {
                "type": "string",
                "description": "The setting, e.g. DECAYLAB_MAX_PARAMETERS.",
            },
        },
        "required": ["estimate", "limit", "setting"],
    },
    DATASET_SIZE: {
        "type": "object",
        "properties": {"le": {"type": "integer", "description": "The samples there are."}},
        "required": ["le"],
    },
}
ERROR_TITLES = {RESOURCE_LIMIT: "ResourceLimitError", DATASET_SIZE: "DatasetSizeError"}
ERROR_TEXT = {
    RESOURCE_LIMIT: "A deployment's limit (DECAYLAB_MAX_PARAMETERS, _MAX_MEMORY_BYTES, "
    "_MAX_RUN_DISK_BYTES, _MAX_SWEEP_RUNS) that the body's fields exceed together; ctx names "
    "the setting, its value and the estimate.",
    DATASET_SIZE: "train_size or test_size beyond what the dataset has (CIFAR-10: 50,000 and "
    "10,000 samples).",
}
REFUSED = {
    ("/runs", "post"): "Invalid spec or priority: every wrong field at once. Besides the "
    "schema's rules: resource_limit (the spec's estimated cost exceeds a DECAYLAB_MAX_* "
    "setting) and dataset_size (CIFAR-10's sizes).",
    ("/sweeps", "post"): "Invalid sweep: every error at once, each located in the body with "
    "0-based positions. Besides the schema's rules: a grid value repeated (value_error), and "
    "for each member (the base with its grid values), dataset_size and resource_limit, at the "
    "grid value or base field that causes it; resource_limit at ['body', 'grid'] for more "
    "members than DECAYLAB_MAX_SWEEP_RUNS.",
}


def _link(operation_id: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {"operationId": operation_id, "parameters": parameters}


def add_links(schema: dict[str, Any]) -> None:
    """Explicit links (idempotent)."""
    paths = schema.get("paths", {})
    on_sweep = {
        operation["operationId"]: path
        for path, operations in paths.items()
        if path == SWEEP or path.startswith(f"{SWEEP}/")
        for operation in operations.values()
    }
    from_sweep = {
        target: _link(
            target,
            {"path.sweep_id": "$response.body#/id"} | (DIFFERENCE if "/difference" in path else {}),
        )
        for target, path in on_sweep.items()
    }
    from_sweep["get_run"] = _link("get_run", {"path.run_id": "$response.body#/runs/0/id"})
    to_sweep = {"get_sweep": _link("get_sweep", {"path.sweep_id": "$response.body#/sweep_id"})}
    for (path, method), links in [
        *((source, from_sweep) for source in SWEEP_SOURCES),
        *((source, to_sweep) for source in RUN_SOURCES),
    ]:
        operation = paths.get(path, {}).get(method)
        if operation is None:
            continue
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                response["links"] = links


def add_error_types(schema: dict[str, Any]) -> None:
    """The 422 of POST /runs and POST /sweeps: its error types, each with its own schema."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if "ValidationError" not in components:
        return
    for kind, title in ERROR_TITLES.items():
        components[title] = {
            "title": title,
            "type": "object",
            "description": ERROR_TEXT[kind],
            "properties": {
                "type": {"const": kind, "description": "The rule the body breaks."},
                "loc": components["ValidationError"]["properties"]["loc"]
                | {"description": "Where in the body, positions 0-based."},
                "msg": {"type": "string", "description": "What is wrong, and what to change."},
                "input": {"description": "The value that breaks the rule."},
                "ctx": ERROR_CTX[kind] | {"description": "The rule's numbers."},
            },
            "required": ["type", "loc", "msg", "ctx"],
        }
    components["RefusedSpec"] = {
        "title": "RefusedSpec",
        "type": "object",
        "description": "A 422: every error of the body, schema rules and the rules across "
        "fields (types resource_limit and dataset_size) alike.",
        "properties": {
            "detail": {
                "description": "Every error of the body.",
                "type": "array",
                "items": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/ValidationError"},
                        *({"$ref": f"#/components/schemas/{t}"} for t in ERROR_TITLES.values()),
                    ]
                },
            }
        },
        "required": ["detail"],
    }
    for (path, method), description in REFUSED.items():
        operation = schema.get("paths", {}).get(path, {}).get(method)
        if operation is not None:
            operation["responses"]["422"] = {
                "description": description,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/RefusedSpec"}}
                },
            }
