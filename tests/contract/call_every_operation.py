"""Run by tests/test_contract.py: a client generated from the OpenAPI document (the package
``decaylab_api`` in the directory given) calls every operation it has, on a finished run and on a
missing one, and checks that each answer is parsed into what the document promises.

argv: the generated package's parent directory, the API's base URL, a finished run's id, and
a bearer token (or "")."""

import importlib
import io
import json
import pkgutil
import sys
import time
from typing import Any

sys.path.insert(0, sys.argv[1])
URL, RUN_ID, TOKEN = sys.argv[2], int(sys.argv[3]), sys.argv[4]

import decaylab_api  # noqa: E402
import decaylab_api.api  # noqa: E402
from decaylab_api.models import (  # noqa: E402
    CompareOut,
    ConstancyOut,
    ErrorOut,
    HealthOut,
    HTTPValidationError,
    MetricsOut,
    RunList,
    RunOut,
    RunPatch,
    RunSpec,
    WeightStatsOut,
)
from decaylab_api.types import File  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
TINY = {"dataset": "synthetic", "hidden_sizes": [16], "train_size": 256, "test_size": 128}


def client() -> Any:
    if TOKEN:
        return decaylab_api.AuthenticatedClient(base_url=URL, token=TOKEN, timeout=60)
    return decaylab_api.Client(base_url=URL, timeout=60)


def operations() -> dict[str, Any]:
    found = {}
    for group in pkgutil.iter_modules(decaylab_api.api.__path__):
        package = importlib.import_module(f"decaylab_api.api.{group.name}")
        for module in pkgutil.iter_modules(package.__path__):
            found[module.name] = importlib.import_module(f"{package.__name__}.{module.name}")
    return found


def arguments(name: str, run_id: int) -> dict[str, Any]:
    """Keyword arguments for an operation, by the parameters it takes."""
    values: dict[str, Any] = {"run_id": run_id, "epoch": 1, "runs": [run_id], "tol": 0.0}
    module = OPERATIONS[name]
    import inspect

    accepted = inspect.signature(module.sync_detailed).parameters
    kwargs = {k: v for k, v in values.items() if k in accepted}
    if name == "patch_run":
        kwargs["body"] = RunPatch.from_dict({"priority": 1})
    elif "body" in accepted:
        kwargs["body"] = RunSpec.from_dict(TINY | {"epochs": 1, "name": "generated client"})
    return kwargs


def call(name: str, run_id: int) -> tuple[int, Any, bytes]:
    response = OPERATIONS[name].sync_detailed(client=client(), **arguments(name, run_id))
    return int(response.status_code), response.parsed, response.content


OPERATIONS = operations()
EXPECTED_OK = {
    "create_run": (201, RunOut),
    "list_runs": (200, RunList),
    "get_run": (200, RunOut),
    "get_metrics": (200, MetricsOut),
    "get_metrics_png": (200, File),
    "get_constancy": (200, ConstancyOut),
    "get_constancy_png": (200, File),
    "get_weight_stats": (200, WeightStatsOut),
    "get_weight_stats_png": (200, File),
    "get_report": (200, str),
    "get_snapshot": (200, File),
    "compare_runs": (200, CompareOut),
    "compare_runs_png": (200, File),
    "health": (200, HealthOut),
    "health_head": (200, type(None)),
}
assert set(EXPECTED_OK) | {"cancel_run", "delete_run"} <= set(OPERATIONS), sorted(OPERATIONS)
seen: dict[str, list[int]] = {}
# Operations this script has no expectation for (routes added after it) must still answer
# what the document says, parsed: a 2xx, or a documented 404 (e.g. a view the run lacks).
for name in sorted(set(OPERATIONS) - set(EXPECTED_OK) - {"cancel_run", "delete_run"}):
    if name.endswith("events"):
        continue  # a live stream (SSE): no request/response operation for a generated client
    if "sweep" in name:
        continue  # known gap: the sweeps' document is not exact yet (see test_contract.py)
    got, parsed, content = call(name, RUN_ID)
    assert got < 300 or got == 404, (name, got, content[:300])
    assert parsed is not None or got == 204 or name.endswith("_png"), (name, got, content[:300])
    if name.endswith("_png") and got == 200:
        assert isinstance(parsed, File) and content.startswith(PNG), name
    seen[name] = [got]
for name, (status, kind) in EXPECTED_OK.items():
    got, parsed, content = call(name, RUN_ID)
    assert got == status and isinstance(parsed, kind), (name, got, parsed, content[:300])
    if kind is File:
        payload = parsed.payload.read() if isinstance(parsed.payload, io.IOBase) else b""
        assert payload == content and len(payload) > 100, name
        if name.endswith("_png"):
            assert payload.startswith(PNG), name
    seen[name] = [got]

# A run to cancel, then delete (202, 204), made through the client itself.
status, created, _ = call("create_run", RUN_ID)
assert status == 201
status, cancelled, _ = call("cancel_run", created.id)
assert status == 202 and isinstance(cancelled, RunOut), (status, cancelled)
# The worker may have claimed it already: it stops at its next batch, unless its one epoch ends
# first (then the run has succeeded: a cancel cannot undo a finished run).
deadline = time.monotonic() + 60
while call("get_run", created.id)[1].status.value not in ("cancelled", "succeeded"):
    assert time.monotonic() < deadline, "the cancelled run did not stop"
    time.sleep(0.2)
status, deleted, _ = call("delete_run", created.id)
assert status == 204 and deleted is None, (status, deleted)
seen |= {"cancel_run": [202], "delete_run": [204]}

# Error answers: a run that does not exist is a parsed 404 everywhere it can be named.
MISSING = 2**40
for name in (op for op in OPERATIONS if "sweep" not in op):
    if "run_id" not in arguments(name, MISSING) and "runs" not in arguments(name, MISSING):
        continue
    if name not in seen:
        continue
    status, parsed, content = call(name, MISSING)
    assert status == 404 and isinstance(parsed, ErrorOut), (name, status, parsed, content[:300])
    assert parsed.detail, name
    seen[name].append(404)
# And a 422, parsed as the validation error it is.
bad = OPERATIONS["get_run"].sync_detailed(client=client(), run_id=0)
assert bad.status_code == 422 and isinstance(bad.parsed, HTTPValidationError), bad
seen["get_run"].append(422)
print(json.dumps(seen, sort_keys=True))
