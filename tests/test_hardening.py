"""Hostile input and resource limits: 4xx naming the field, never a 500, nothing stored."""

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.api.app import create_app
from server.core.runfiles import RunFiles
from server.core.schemas import RunSpec
from server.core.settings import Settings
from server.store import limits
from server.store.db import Database
from worker.engine.model import build_model
from worker.engine.train import Training
from worker.loop import Worker

pytestmark = pytest.mark.backends("sqlite", "postgresql")

JSON = {"content-type": "application/json"}


def stored(client: TestClient) -> int:
    return client.get("/runs").json()["total"]


@pytest.mark.parametrize(
    "body,field",
    [
        # A lone surrogate is valid JSON but no UTF-8: the 422 that echoes it must still encode.
        (b'{"name": "\\ud800"}', "name"),
        (b'{"na\\udfffme": 1}', "body"),  # the key itself: pydantic names the body
        (b'{"name": "a\\u0000b"}', "name"),
        (b'{"seed": 18446744073709551616}', "seed"),
        (b'{"seed": -9223372036854775809}', "seed"),
        (b'{"epochs": 1e400}', "epochs"),
        (b'{"tolerances": [0, NaN]}', "tolerances"),
        (b'{"hidden_sizes": "512"}', "hidden_sizes"),
        (b'{"epochs": true}', "epochs"),
    ],
)
def test_hostile_spec_values_are_422_naming_the_field(lenient, body, field):
    response = lenient.post("/runs", content=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert any(field in error["loc"] for error in response.json()["detail"])
    assert stored(lenient) == 0


@pytest.mark.parametrize(
    "body", [b"{", b"\xff\xfe{}", b"[" * 50_000, b'{"name": "x"} trailing', b"", b"null"]
)
def test_malformed_json_is_a_4xx_with_a_detail(lenient, body):
    response = lenient.post("/runs", content=body, headers=JSON)
    assert response.status_code in (400, 422), response.text
    assert response.json()["detail"]
    assert stored(lenient) == 0


@pytest.mark.parametrize(
    "path",
    [
        "/runs/9223372036854775808",
        "/runs/-9223372036854775809",
        "/runs/99999999999999999999/constancy",
        "/runs/1/snapshots/99999999999999999999",
        "/compare?runs=1,99999999999999999999",
        "/runs?offset=99999999999999999999",
        "/runs?limit=1e3",
        "/runs/1/constancy?tol=1e400",
        "/runs/1/constancy?tol=-0.1",
        "/compare?runs=" + ",".join(map(str, range(1, 1000))),
        "/compare?runs=1,1",
        "/runs?status=%ff",
    ],
)
def test_absurd_path_and_query_values_are_4xx_not_500(lenient, tiny_spec, path):
    lenient.post("/runs", json=tiny_spec())
    response = lenient.get(path)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]


def test_a_body_over_the_limit_is_413_whether_announced_or_streamed(settings):
    small = settings.model_copy(update={"max_body_bytes": 1000})
    with TestClient(create_app(small)) as client:
        body = json.dumps({"name": "x" * 150, "dataset": "synthetic", "hidden_sizes": [8]})
        assert client.post("/runs", content=body, headers=JSON).status_code == 201
        big = json.dumps({"name": "x" * 2000}).encode()
        announced = client.post("/runs", content=big, headers=JSON)
        assert announced.status_code == 413
        assert "1,000 bytes" in announced.json()["detail"]
        # No Content-Length: the limit holds while the chunks arrive.
        streamed = client.post("/runs", content=iter([big[:600], big[600:]]), headers=JSON)
        assert "content-length" not in streamed.request.headers
        assert streamed.status_code == 413 and "DECAYLAB_MAX_BODY_BYTES" in streamed.text
        assert stored(client) == 1


def test_the_seeds_experiment_is_admitted_by_the_default_limits(client):
    for spec in ({}, {"weight_decay": 0.001, "keep_snapshots": True, "optimizer": "adamw"}):
        assert limits.violations(RunSpec(**spec), Settings()) == []
        assert client.post("/runs", json=spec).status_code == 201


@pytest.mark.parametrize(
    "spec,field,setting",
    [
        ({"hidden_sizes": [8192] * 8}, "hidden_sizes", "DECAYLAB_MAX_PARAMETERS"),
        (
            {"dataset": "synthetic", "train_size": 10_000_000},
            "train_size",
            "DECAYLAB_MAX_MEMORY_BYTES",
        ),
        ({"keep_snapshots": True, "epochs": 1000}, "keep_snapshots", "DECAYLAB_MAX_RUN_DISK_BYTES"),
    ],
)
def test_a_spec_beyond_a_default_limit_is_422_naming_field_and_limit(client, spec, field, setting):
    response = client.post("/runs", json=spec)
    assert response.status_code == 422
    errors = [e for e in response.json()["detail"] if e["ctx"].get("setting") == setting]
    assert errors and errors[0]["loc"] == ["body", field] and setting in errors[0]["msg"]
    assert errors[0]["ctx"]["estimate"] > errors[0]["ctx"]["limit"]
    assert stored(client) == 0


def test_limits_are_configurable(settings, tiny_spec):
    strict = settings.model_copy(
        update={"max_parameters": 50_000, "max_memory_bytes": 10**6, "max_run_disk_bytes": 10**6}
    )
    with TestClient(create_app(strict)) as client:
        response = client.post("/runs", json=tiny_spec(keep_snapshots=True))
        assert response.status_code == 422
        assert {e["ctx"]["limit"] for e in response.json()["detail"]} == {50_000, 10**6}
        assert stored(client) == 0


def test_cifar10_sizes_beyond_the_dataset_are_refused_up_front(client):
    response = client.post("/runs", json={"train_size": 50_001, "test_size": 10_001})
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [
        ["body", "train_size"],
        ["body", "test_size"],
    ]
    assert client.post("/runs", json={"dataset": "synthetic", "train_size": 50_001}).is_success


@pytest.mark.parametrize("hidden", [[32], [512, 512, 512], [7, 300, 1]])
def test_the_parameter_count_is_the_engines(hidden):
    model = build_model(hidden, seed=0)
    assert limits.parameter_count(hidden) == sum(p.numel() for p in model.parameters())


def run_dir_bytes(run_dir: Path) -> int:
    return sum(f.stat().st_size for f in run_dir.rglob("*") if f.is_file())


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_runs_files_stay_within_the_disk_estimate(tmp_path, tiny_spec, optimizer):
    spec = RunSpec(**tiny_spec(epochs=4, keep_snapshots=True, optimizer=optimizer))
    run_dir = tmp_path / "run"
    training = Training.fresh(spec, RunFiles(run_dir), data_dir=tmp_path)
    largest = max(run_dir_bytes(run_dir) for _ in training.epochs())
    budget = limits.estimate(spec).disk_bytes
    # An upper bound, and not a loose one: file headers aside, it is what a run writes.
    assert budget * 0.6 < largest <= budget


def test_deleting_a_run_removes_its_files(client, settings, db: Database, tiny_spec):
    run_id = client.post("/runs", json=tiny_spec(epochs=2, keep_snapshots=True)).json()["id"]
    Worker(settings, db).run(once=True)
    run_dir = settings.run_files(run_id).root
    assert client.get(f"/runs/{run_id}").json()["status"] == "succeeded"
    assert list(run_dir.glob("checkpoints/*.pt")) and list(run_dir.glob("snapshots/*.npz"))
    assert client.delete(f"/runs/{run_id}").status_code == 204
    assert not run_dir.exists()
