"""The runs resource over HTTP: submit, read, list, cancel, delete, and the error contract."""

import pytest

from server.core.schemas import RunSpec
from server.store import crud

# Every request edge case on both backends: PostgreSQL's types are narrower than SQLite's.
pytestmark = pytest.mark.backends("sqlite", "postgresql")


def test_submit_returns_201_location_and_the_spec_with_defaults(client, tiny_spec):
    response = client.post("/runs", json=tiny_spec(name="baseline", weight_decay=0.001))
    assert response.status_code == 201
    run = response.json()
    assert response.headers["location"] == f"/runs/{run['id']}"
    assert run["status"] == "queued" and run["name"] == "baseline"
    assert run["epochs_done"] == 0 and run["attempts"] == 0 and not run["cancel_requested"]
    assert run["spec"] == RunSpec(**tiny_spec(name="baseline", weight_decay=0.001)).model_dump()
    assert run["spec"]["momentum"] == 0.9 and run["spec"]["basis"] == "previous"
    assert client.get(response.headers["location"]).json() == run


@pytest.mark.parametrize(
    "field,value",
    [
        ("weight_decay", -0.1),
        ("epochs", 0),
        ("tolerances", [0.1, 0.1]),
        ("momentum", 1),
        ("optimizer", "rmsprop"),
        ("dataset", "mnist"),
        ("basis", "middle"),
        ("hidden_sizes", [0]),
        ("train_size", 0),
        ("wd", 0.1),
    ],
)
def test_invalid_spec_is_422_naming_the_field_and_stores_nothing(client, field, value):
    response = client.post("/runs", json={field: value})
    assert response.status_code == 422
    assert any(error["loc"][:2] == ["body", field] for error in response.json()["detail"])
    assert client.get("/runs").json()["total"] == 0


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_422_not_500(client, number):
    body = f'{{"learning_rate": {number}}}'
    response = client.post("/runs", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "learning_rate"]


def test_list_filters_by_status_and_pages_newest_first(client, tiny_spec):
    ids = [client.post("/runs", json=tiny_spec()).json()["id"] for _ in range(5)]
    client.post(f"/runs/{ids[1]}/cancel")
    page = client.get("/runs", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 5 and (page["limit"], page["offset"]) == (2, 1)
    assert [r["id"] for r in page["runs"]] == [ids[3], ids[2]]
    cancelled = client.get("/runs", params={"status": "cancelled"}).json()
    assert cancelled["total"] == 1 and cancelled["runs"][0]["id"] == ids[1]
    assert client.get("/runs", params={"status": "queued"}).json()["total"] == 4


@pytest.mark.parametrize(
    "params", [{"status": "paused"}, {"limit": 0}, {"limit": 1001}, {"offset": -1}]
)
def test_bad_list_query_is_422(client, params):
    response = client.get("/runs", params=params)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", next(iter(params))]


def test_unknown_run_is_404_everywhere(client):
    for method, path in [
        ("get", "/runs/42"),
        ("post", "/runs/42/cancel"),
        ("delete", "/runs/42"),
        ("get", "/runs/42/metrics"),
        ("get", "/runs/42/constancy"),
        ("get", "/runs/42/weights"),
        ("get", "/runs/42/snapshots/0"),
        ("get", "/compare?runs=42"),
    ]:
        response = client.request(method, path)
        assert response.status_code == 404, path
        assert response.json() == {"detail": "run 42 not found"}


def test_cancel_a_queued_run_at_once_and_refuse_a_finished_one(client, tiny_spec):
    run_id = client.post("/runs", json=tiny_spec()).json()["id"]
    response = client.post(f"/runs/{run_id}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled" and response.json()["finished_at"]
    again = client.post(f"/runs/{run_id}/cancel")
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]


def test_cancel_a_running_run_flags_it_for_its_worker(client, play, tiny_spec):
    played = play(tiny_spec(), epochs=1, finish=None)
    response = client.post(f"/runs/{played.run_id}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "running" and response.json()["cancel_requested"]


def test_delete_removes_rows_and_files_but_not_a_running_run(client, play, tiny_spec, settings, db):
    running = play(tiny_spec(), epochs=1, finish=None)
    conflict = client.delete(f"/runs/{running.run_id}")
    assert conflict.status_code == 409 and "running" in conflict.json()["detail"]
    done = play(tiny_spec(), epochs=2)
    files = settings.run_files(done.run_id).root / "checkpoints"
    files.mkdir(parents=True)
    (files / "epoch_0002.pt").write_bytes(b"x")
    assert client.delete(f"/runs/{done.run_id}").status_code == 204
    assert not settings.run_files(done.run_id).root.exists()
    assert client.get(f"/runs/{done.run_id}").status_code == 404
    assert client.get(f"/runs/{running.run_id}").json()["status"] == "running"
    with db.reader() as session:
        assert crud.list_runs(session, None, 10, 0)[0] == 1


def test_health(client):
    assert client.get("/health").json() == {"status": "ok"}


def test_openapi_documents_the_contract(client):
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in [
        "/runs",
        "/runs/{run_id}",
        "/runs/{run_id}/cancel",
        "/runs/{run_id}/metrics",
        "/runs/{run_id}/constancy",
        "/runs/{run_id}/weights",
        "/runs/{run_id}/snapshots/{epoch}",
        "/compare",
        "/health",
    ]:
        assert path in paths
    assert "201" in paths["/runs"]["post"]["responses"]
    assert {"404", "409"} <= set(paths["/runs/{run_id}"]["delete"]["responses"])
    assert schema["components"]["schemas"]["RunSpec"]["additionalProperties"] is False
