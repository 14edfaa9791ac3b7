"""Run by tests/test_contract.py: a client generated from the OpenAPI document (the package
``decaylab_api`` in the directory given) calls every operation it has, on a finished run and on a
missing one, and checks that each answer is parsed into what the document promises.

argv: the generated package's parent directory, the API's base URL, a finished run's id, a
finished sweep's id (of two groups), and a bearer token (or "")."""

import importlib
import io
import json
import pkgutil
import sys
import time
from typing import Any

sys.path.insert(0, sys.argv[1])
URL, RUN_ID, SWEEP_ID, TOKEN = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]

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
    SweepConstancyAllOut,
    SweepConstancyOut,
    SweepDifferenceOut,
    SweepList,
    SweepMetricsOut,
    SweepOut,
    SweepSummaryOut,
    WeightStatsOut,
)
from decaylab_api.models.create_sweep_body import CreateSweepBody  # noqa: E402
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


def arguments(name: str, run_id: int, sweep_id: int = SWEEP_ID) -> dict[str, Any]:
    """Keyword arguments for an operation, by the parameters it takes."""
    values: dict[str, Any] = {"run_id": run_id, "epoch": 1, "runs": [run_id], "tol": 0.0}
    values |= {"sweep_id": sweep_id, "a": 0, "b": 1}
    module = OPERATIONS[name]
    import inspect

    accepted = inspect.signature(module.sync_detailed).parameters
    kwargs = {k: v for k, v in values.items() if k in accepted}
    if name == "patch_run":
        kwargs["body"] = RunPatch.from_dict({"priority": 1})
    elif name == "create_sweep":
        base = TINY | {"epochs": 1, "name": "generated client"}
        kwargs["body"] = CreateSweepBody.from_dict({"base": base, "grid": {"seed": [0, 1]}})
    elif "body" in accepted:
        kwargs["body"] = RunSpec.from_dict(TINY | {"epochs": 1, "name": "generated client"})
    return kwargs


def call(name: str, run_id: int, sweep_id: int = SWEEP_ID) -> tuple[int, Any, bytes]:
    kwargs = arguments(name, run_id, sweep_id)
    response = OPERATIONS[name].sync_detailed(client=client(), **kwargs)
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
    "get_report": (308, type(None)),  # the run page moved to /ui/runs/{id}
    "get_snapshot": (200, File),
    "compare_runs": (200, CompareOut),
    "compare_runs_png": (200, File),
    "health": (200, HealthOut),
    "health_head": (200, type(None)),
    "list_sweeps": (200, SweepList),
    "get_sweep": (200, SweepOut),
    "get_sweep_constancy": (200, (SweepConstancyOut, SweepConstancyAllOut)),
    "get_sweep_constancy_png": (200, File),
    "get_sweep_metrics": (200, SweepMetricsOut),
    "get_sweep_metrics_png": (200, File),
    "get_sweep_summary": (200, SweepSummaryOut),
    "get_sweep_summary_png": (200, File),
    "get_sweep_difference": (200, SweepDifferenceOut),
    "get_sweep_difference_png": (200, File),
}
ACTIONS = {"cancel_run", "delete_run", "create_sweep", "cancel_sweep", "delete_sweep"}
assert set(EXPECTED_OK) | ACTIONS <= set(OPERATIONS), sorted(OPERATIONS)
seen: dict[str, list[int]] = {}
# Operations this script has no expectation for (routes added after it) must still answer
# what the document says, parsed: a 2xx, or a documented 404 (e.g. a view the run lacks).
for name in sorted(set(OPERATIONS) - set(EXPECTED_OK) - ACTIONS):
    if name.endswith("events"):
        continue  # a live stream (SSE): no request/response operation for a generated client
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

# A sweep to cancel, then delete (201, 202, 204).
status, sweep, content = call("create_sweep", RUN_ID)
assert status == 201 and isinstance(sweep, SweepOut), (status, content[:300])
status, cancelled, _ = call("cancel_sweep", RUN_ID, sweep.id)
assert status == 202 and isinstance(cancelled, SweepOut), (status, cancelled)
deadline = time.monotonic() + 60
while call("get_sweep", RUN_ID, sweep.id)[1].progress.by_status["running"]:
    assert time.monotonic() < deadline, "the cancelled sweep did not stop"
    time.sleep(0.2)
status, deleted, _ = call("delete_sweep", RUN_ID, sweep.id)
assert status == 204 and deleted is None, (status, deleted)
seen |= {"create_sweep": [201], "cancel_sweep": [202], "delete_sweep": [204]}

# Error answers: a run or sweep that does not exist is a parsed 404 everywhere it is named.
MISSING = 2**40
for name in OPERATIONS:
    named = arguments(name, MISSING, MISSING)
    if not {"run_id", "runs", "sweep_id"} & set(named) or name not in seen:
        continue
    status, parsed, content = call(name, MISSING, MISSING)
    assert status == 404 and isinstance(parsed, ErrorOut), (name, status, parsed, content[:300])
    assert parsed.detail, name
    seen[name].append(404)
# And a 422, parsed as the validation error it is.
bad = OPERATIONS["get_run"].sync_detailed(client=client(), run_id=0)
assert bad.status_code == 422 and isinstance(bad.parsed, HTTPValidationError), bad
seen["get_run"].append(422)
print(json.dumps(seen, sort_keys=True))
