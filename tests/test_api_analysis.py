"""The analysis views over HTTP: metrics, constancy, weights, compare and snapshots.

Runs are stored with random counts through the store (as a worker would); the expected
percentages are derived here from those counts."""

import io
import random

import numpy as np
import pytest
from conftest import random_epoch

from server.store import jobs

# Every request edge case on both backends: PostgreSQL's types are narrower than SQLite's.
pytestmark = pytest.mark.backends("sqlite", "postgresql")


def percent(count: int, parameters: int) -> float:
    return 100.0 * count / parameters


def test_metrics_are_the_stored_epochs_in_order(client, play, tiny_spec):
    played = play(tiny_spec(), epochs=3)
    body = client.get(f"/runs/{played.run_id}/metrics").json()
    assert body["run_id"] == played.run_id and body["epochs"] == [1, 2, 3]
    for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "epoch_seconds"):
        assert body[key] == [getattr(e, key) for e in played.epochs]


def test_constancy_at_one_tolerance_per_layer_mean_and_last_two(client, play, tiny_spec):
    played = play(tiny_spec(tolerances=[0.1, 0, 0.01]), epochs=3)
    body = client.get(f"/runs/{played.run_id}/constancy", params={"tol": 0.01}).json()
    t = 1  # 0.01 is second of the ascending tolerances [0, 0.01, 0.1]
    assert body["tolerance"] == 0.01 and body["basis"] == "previous" and body["epochs"] == [1, 2, 3]
    expected = [
        [percent(e.counts[layer.index][t], layer.parameters) for e in played.epochs]
        for layer in played.tensors
    ]
    assert [la["percent"] for la in body["layers"]] == expected
    assert [(la["index"], la["name"], la["parameters"]) for la in body["layers"]] == [
        (x.index, x.name, x.parameters) for x in played.tensors
    ]
    assert body["mean"] == pytest.approx(np.mean(expected, axis=0).tolist())
    assert body["last_two_mean"] == pytest.approx(np.mean(expected[-2:], axis=0).tolist())


def test_constancy_without_tol_gives_every_tolerance(client, play, tiny_spec):
    played = play(tiny_spec(basis="next"), epochs=2)
    body = client.get(f"/runs/{played.run_id}/constancy").json()
    assert body["tolerances"] == [0, 0.001, 0.01, 0.1] and body["basis"] == "next"
    for t, result in enumerate(body["results"]):
        assert result["tolerance"] == body["tolerances"][t]
        assert result["layers"][0]["percent"] == [
            percent(e.counts[0][t], played.tensors[0].parameters) for e in played.epochs
        ]


def test_means_are_over_weight_matrices_when_biases_are_measured(client, play, tiny_spec):
    weights, biases = (96, 32, 48, 10), (32, 16, 16, 10)
    played = play(tiny_spec(include_biases=True), epochs=2, parameters=weights + biases)
    body = client.get(f"/runs/{played.run_id}/constancy", params={"tol": 0}).json()
    assert len(body["layers"]) == 8
    names = [la["name"] for la in body["layers"]]
    assert names[:4] == [f"layers.{i}.weight" for i in range(4)]
    expected = [la["percent"] for la in body["layers"][:4]]
    assert body["mean"] == pytest.approx(np.mean(expected, axis=0).tolist())
    assert body["last_two_mean"] == pytest.approx(np.mean(expected[2:], axis=0).tolist())


def test_tolerance_spelling_does_not_matter(client, play, tiny_spec):
    played = play(tiny_spec(), epochs=1)
    a = client.get(f"/runs/{played.run_id}/constancy?tol=0.001").json()
    b = client.get(f"/runs/{played.run_id}/constancy?tol=1e-3").json()
    assert a == b and a["tolerance"] == 0.001


def test_a_tolerance_not_computed_is_404_listing_the_computed_ones(client, play, tiny_spec):
    played = play(tiny_spec(tolerances=[0, 0.05]), epochs=1)
    response = client.get(f"/runs/{played.run_id}/constancy", params={"tol": 0.1})
    assert response.status_code == 404
    assert "0.1" in response.json()["detail"] and "[0.0, 0.05]" in response.json()["detail"]


@pytest.mark.parametrize("tol", ["abc", "-0.1", "nan", "inf"])
def test_bad_tol_is_422(client, play, tiny_spec, tol):
    played = play(tiny_spec(), epochs=1)
    response = client.get(f"/runs/{played.run_id}/constancy", params={"tol": tol})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "tol"]


def test_progress_is_visible_epoch_by_epoch_while_running(client, play, tiny_spec, db):
    played = play(tiny_spec(epochs=5), epochs=1, finish=None)
    run_path = f"/runs/{played.run_id}"
    assert client.get(f"{run_path}/metrics").json()["epochs"] == [1]
    assert client.get(f"{run_path}/constancy?tol=0").json()["epochs"] == [1]

    with db.write() as session:
        epoch = random_epoch(random.Random(5), 2, played.tensors, 4)
        jobs.record_epoch(session, played.lease, epoch, 60)
    assert client.get(run_path).json()["epochs_done"] == 2
    assert client.get(f"{run_path}/metrics").json()["epochs"] == [1, 2]
    assert client.get(f"{run_path}/constancy?tol=0").json()["epochs"] == [1, 2]
    assert client.get(f"{run_path}/weights").json()["epochs"] == [0, 1, 2]


def test_weight_variances_from_epoch_zero(client, play, tiny_spec):
    played = play(tiny_spec(), epochs=2)
    body = client.get(f"/runs/{played.run_id}/weights").json()
    assert body["epochs"] == [0, 1, 2]
    for layer in body["layers"]:
        i = layer["index"]
        assert layer["parameters"] == played.tensors[i].parameters
        assert layer["variance"] == [played.initial_variances[i]] + [
            e.variances[i] for e in played.epochs
        ]


def test_a_queued_run_has_empty_views(client, tiny_spec):
    run_id = client.post("/runs", json=tiny_spec()).json()["id"]
    assert client.get(f"/runs/{run_id}/metrics").json()["epochs"] == []
    body = client.get(f"/runs/{run_id}/constancy?tol=0").json()
    assert body["layers"] == [] and body["mean"] == [] and body["epochs"] == []
    assert client.get(f"/runs/{run_id}/weights").json() == {
        "run_id": run_id,
        "epochs": [],
        "layers": [],
    }


@pytest.fixture
def pair(play, tiny_spec):
    """The seed's pair: no decay and decay 0.001 (the second computed one extra tolerance)."""
    base = play(tiny_spec(name="wd0", weight_decay=0), epochs=3, seed=1)
    decay = play(
        tiny_spec(name="wd1e-3", weight_decay=0.001, tolerances=[0, 0.001, 0.01, 0.1, 0.5]),
        epochs=2,
        seed=2,
    )
    return base, decay


@pytest.mark.parametrize("scope", ["all", "last2", "0", "3"])
def test_compare_one_series_per_run(client, pair, scope):
    base, decay = pair
    query = {"runs": f"{base.run_id},{decay.run_id}", "tol": 0.01, "scope": scope}
    body = client.get("/compare", params=query).json()
    assert body["tolerance"] == 0.01 and body["scope"] == scope
    assert [(r["run_id"], r["name"], r["weight_decay"]) for r in body["runs"]] == [
        (base.run_id, "wd0", 0),
        (decay.run_id, "wd1e-3", 0.001),
    ]
    for entry in body["runs"]:
        view = client.get(f"/runs/{entry['run_id']}/constancy?tol=0.01").json()
        key = {"all": "mean", "last2": "last_two_mean"}.get(scope)
        expected = view[key] if key else view["layers"][int(scope)]["percent"]
        assert entry["percent"] == expected and entry["epochs"] == view["epochs"]
    assert [len(r["epochs"]) for r in body["runs"]] == [3, 2]


def test_compare_without_tol_covers_the_shared_tolerances(client, pair):
    base, decay = pair
    body = client.get("/compare", params={"runs": f"{decay.run_id},{base.run_id}"}).json()
    assert body["scope"] == "all" and body["tolerances"] == [0, 0.001, 0.01, 0.1]
    assert [r["tolerance"] for r in body["results"]] == body["tolerances"]
    assert [r["run_id"] for r in body["results"][0]["runs"]] == [decay.run_id, base.run_id]


def test_compare_accepts_repeated_runs_parameters(client, pair):
    base, decay = pair
    a = client.get(f"/compare?runs={base.run_id},{decay.run_id}&tol=0").json()
    b = client.get(f"/compare?runs={base.run_id}&runs={decay.run_id}&tol=0").json()
    assert a == b


def test_compare_missing_tolerance_or_layer_is_404(client, pair):
    base, decay = pair
    runs = f"{base.run_id},{decay.run_id}"
    missing_tol = client.get("/compare", params={"runs": runs, "tol": 0.5})
    assert missing_tol.status_code == 404 and f"run {base.run_id}" in missing_tol.json()["detail"]
    missing_layer = client.get("/compare", params={"runs": runs, "scope": 4})
    assert missing_layer.status_code == 404 and "no layer 4" in missing_layer.json()["detail"]


@pytest.mark.parametrize(
    "query",
    [
        {"runs": "1,x"},
        {"runs": ""},
        {"runs": "1,1"},
        {"runs": "0"},
        {"runs": ",".join(str(i) for i in range(1, 60))},
        {"runs": "1", "scope": "middle"},
        {"runs": "1", "scope": "-1"},
        {"runs": "1", "tol": "-1"},
        {},
    ],
)
def test_bad_compare_query_is_422_naming_the_parameter(client, pair, query):
    response = client.get("/compare", params=query)
    assert response.status_code == 422
    bad = (set(query) - {"runs"}) or {"runs"}
    assert {tuple(e["loc"][:2]) for e in response.json()["detail"]} == {("query", p) for p in bad}


def test_snapshots_are_served_only_for_runs_that_keep_them(client, play, tiny_spec, settings):
    kept = play(tiny_spec(keep_snapshots=True), epochs=2)
    weights = {"layers.0.weight": np.arange(6, dtype=np.float32).reshape(2, 3)}
    path = settings.run_files(kept.run_id).snapshot(1)
    path.parent.mkdir(parents=True)
    np.savez(path, **weights)
    response = client.get(f"/runs/{kept.run_id}/snapshots/1")
    assert response.status_code == 200
    loaded = np.load(io.BytesIO(response.content))
    assert np.array_equal(loaded["layers.0.weight"], weights["layers.0.weight"])
    assert client.get(f"/runs/{kept.run_id}/snapshots/3").status_code == 404
    assert client.get(f"/runs/{kept.run_id}/snapshots/-1").status_code == 422
    plain = play(tiny_spec(), epochs=1)
    response = client.get(f"/runs/{plain.run_id}/snapshots/0")
    assert response.status_code == 404 and "keep_snapshots" in response.json()["detail"]
