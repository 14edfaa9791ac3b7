"""CSV twins of the analysis views, and ETag/304 on every GET view.

Runs are stored with random results by a pretend worker (the ``play`` fixture); every CSV number
must read back equal to the JSON view's, and every count to the stored one."""

import csv
import io
import random
from typing import Any

import pytest
from conftest import random_epoch

from server.core.experiment import SPECTRUM_TOLERANCES
from server.store import jobs

CSV = "text/csv; charset=utf-8"
TOLERANCES = [0.0, 0.001, 0.01, 0.1]  # the spec's default


def get_csv(client, path: str, **params: Any) -> list[dict[str, str]]:
    response = client.get(path, params=params | {"format": "csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CSV
    return list(csv.DictReader(io.StringIO(response.text)))


def optional_int(text: str) -> int | None:
    return int(text) if text else None


def test_metrics_csv_has_one_row_per_value(client, play, tiny_spec):
    run_id = play(tiny_spec(), epochs=3).run_id
    body = client.get(f"/runs/{run_id}/metrics").json()
    table = get_csv(client, f"/runs/{run_id}/metrics")
    assert list(table[0]) == ["run_id", "epoch", "metric", "value"]
    metrics = ["train_loss", "train_accuracy", "test_loss", "test_accuracy", "epoch_seconds"]
    assert [r["metric"] for r in table] == [m for m in metrics for _ in range(3)]
    for row in table:
        assert int(row["run_id"]) == run_id
        assert float(row["value"]) == body[row["metric"]][body["epochs"].index(int(row["epoch"]))]


@pytest.mark.parametrize("tol", [0.01, None], ids=["one-tolerance", "every-tolerance"])
def test_constancy_csv_equals_the_json_and_the_stored_counts(client, play, tiny_spec, tol):
    played = play(tiny_spec(include_biases=True), epochs=3, parameters=(96, 32, 48, 10, 32, 16))
    params = {} if tol is None else {"tol": tol}
    body = client.get(f"/runs/{played.run_id}/constancy", params=params).json()
    table = get_csv(client, f"/runs/{played.run_id}/constancy", **params)
    assert list(table[0]) == [
        "run_id",
        "tolerance",
        "basis",
        "epoch",
        "layer",
        "name",
        "parameters",
        "constant",
        "percent",
    ]
    expected = []
    for result in body["results"] if tol is None else [body]:
        t = TOLERANCES.index(result["tolerance"])
        for layer in result["layers"]:
            for i, epoch in enumerate(result["epochs"]):
                count = played.epochs[i].counts[layer["index"]][t]
                expected.append(
                    (result["tolerance"], epoch, str(layer["index"]), layer["name"])
                    + (layer["parameters"], count, layer["percent"][i])
                )
        for scope, series in (("all", result["mean"]), ("last2", result["last_two_mean"])):
            for epoch, value in zip(result["epochs"], series, strict=True):
                expected.append((result["tolerance"], epoch, scope, "", None, None, value))
    got = [
        (float(r["tolerance"]), int(r["epoch"]), r["layer"], r["name"])
        + (optional_int(r["parameters"]), optional_int(r["constant"]), float(r["percent"]))
        for r in table
    ]
    assert got == expected
    assert {r["run_id"] for r in table} == {str(played.run_id)}
    assert {r["basis"] for r in table} == {"previous"}


def test_weights_csv_equals_the_json(client, play, tiny_spec):
    run_id = play(tiny_spec(), epochs=2).run_id
    body = client.get(f"/runs/{run_id}/weights").json()
    table = get_csv(client, f"/runs/{run_id}/weights")
    assert list(table[0]) == ["run_id", "epoch", "layer", "name", "parameters", "variance"]
    expected = [
        (run_id, epoch, layer["index"], layer["name"], layer["parameters"], variance)
        for layer in body["layers"]
        for epoch, variance in zip(body["epochs"], layer["variance"], strict=True)
    ]
    got = [
        (int(r["run_id"]), int(r["epoch"]), int(r["layer"]), r["name"])
        + (int(r["parameters"]), float(r["variance"]))
        for r in table
    ]
    assert got == expected and body["epochs"][0] == 0


@pytest.mark.parametrize("tol", [0.001, None], ids=["one-tolerance", "every-tolerance"])
@pytest.mark.parametrize("scope", ["all", "last2", "1"])
def test_compare_csv_equals_the_json(client, play, tiny_spec, tol, scope):
    first = play(tiny_spec(name="a"), epochs=3, seed=1).run_id
    second = play(tiny_spec(weight_decay=0.001), epochs=2, seed=2).run_id
    params = {"runs": f"{first},{second}", "scope": scope} | ({} if tol is None else {"tol": tol})
    body = client.get("/compare", params=params).json()
    table = get_csv(client, "/compare", **params)
    assert list(table[0]) == [
        "tolerance",
        "layer",
        "run_id",
        "name",
        "weight_decay",
        "epoch",
        "percent",
    ]
    expected = [
        (result["tolerance"], scope, run["run_id"], run["name"] or "", run["weight_decay"])
        + (epoch, percent)
        for result in (body["results"] if tol is None else [body])
        for run in result["runs"]
        for epoch, percent in zip(run["epochs"], run["percent"], strict=True)
    ]
    got = [
        (float(r["tolerance"]), r["layer"], int(r["run_id"]), r["name"], float(r["weight_decay"]))
        + (int(r["epoch"]), float(r["percent"]))
        for r in table
    ]
    assert got == expected


# --- the mechanism's views: dead units and the movement spectrum ---

# Two hidden layers (32 and 16 units): three weight matrices, then their biases.
MECHANISM_PARAMETERS = (96, 32, 48, 32, 16, 10)


def mechanism_run(play, tiny_spec, **spec: Any):
    return play(
        tiny_spec(hidden_sizes=[32, 16], include_biases=True, **spec),
        epochs=3,
        parameters=MECHANISM_PARAMETERS,
        mechanism=True,
        seed=len(spec),
    )


def test_units_csv_equals_the_json_and_the_stored_counts(client, play, tiny_spec):
    played = mechanism_run(play, tiny_spec)
    body = client.get(f"/runs/{played.run_id}/units").json()
    table = get_csv(client, f"/runs/{played.run_id}/units")
    assert list(table[0]) == [
        "run_id",
        "epoch",
        "layer",
        "name",
        "parameters",
        "constant",
        "explained",
        "units",
        "dead",
    ]
    hidden = {h["layer"]: h for h in body["hidden"]}
    expected = []
    for w in body["weights"]:
        after = hidden.get(w["layer"])
        for i, epoch in enumerate(body["epochs"]):
            record = played.epochs[i]
            # The JSON's numbers, and the pretend worker's.
            assert w["constant"][i] == record.unchanged[w["layer"]]
            assert w["explained"][i] == record.explained[w["layer"]]
            dead = after["dead"][i] if after else None
            if after:
                assert dead == len(record.dead_units[w["layer"]])
            expected.append(
                (played.run_id, epoch, w["layer"], w["name"], w["parameters"])
                + (w["constant"][i], w["explained"][i], after and after["units"], dead)
            )
    got = [
        (int(r["run_id"]), int(r["epoch"]), int(r["layer"]), r["name"], int(r["parameters"]))
        + (int(r["constant"]), int(r["explained"]), optional_int(r["units"]))
        + (optional_int(r["dead"]),)
        for r in table
    ]
    assert got == expected
    # Every weight matrix × epoch; the output layer has no hidden layer after it.
    assert len(got) == 3 * 3 and [row[7] for row in got] == [32] * 3 + [16] * 3 + [None] * 3


def test_spectrum_csv_equals_the_json_and_the_stored_counts(client, play, tiny_spec):
    played = mechanism_run(play, tiny_spec)
    body = client.get(f"/runs/{played.run_id}/spectrum").json()
    table = get_csv(client, f"/runs/{played.run_id}/spectrum")
    # The constancy table's columns: a spectrum row is a constancy row at a ladder tolerance.
    assert list(table[0]) == list(get_csv(client, f"/runs/{played.run_id}/constancy")[0])
    expected = [
        (tolerance, epoch, layer["index"], layer["name"], layer["parameters"])
        + (played.epochs[i].spectrum[layer["index"]][k], layer["percent"][i][k])
        for k, tolerance in enumerate(body["tolerances"])
        for layer in body["layers"]
        for i, epoch in enumerate(body["epochs"])
    ]
    got = [
        (float(r["tolerance"]), int(r["epoch"]), int(r["layer"]), r["name"])
        + (int(r["parameters"]), int(r["constant"]), float(r["percent"]))
        for r in table
    ]
    assert got == expected and len(got) == len(SPECTRUM_TOLERANCES) * 6 * 3
    assert {(r["run_id"], r["basis"]) for r in table} == {(str(played.run_id), "previous")}


def test_compare_spectrum_csv_equals_the_json_in_the_runs_order(client, play, tiny_spec):
    first = mechanism_run(play, tiny_spec).run_id
    second = mechanism_run(play, tiny_spec, name="decay", weight_decay=0.001, basis="next").run_id
    params = {"runs": f"{second},{first}"}
    body = client.get("/compare/spectrum", params=params).json()
    table = get_csv(client, "/compare/spectrum", **params)
    assert list(table[0]) == [
        "run_id",
        "name",
        "weight_decay",
        "basis",
        "tolerance",
        "epoch",
        "layer",
        "parameters",
        "constant",
        "percent",
    ]
    expected = [
        (run["run_id"], run["name"] or "", run["weight_decay"], run["basis"], tolerance)
        + (epoch, layer["index"], layer["parameters"])
        + (round(layer["percent"][i][k] * layer["parameters"] / 100), layer["percent"][i][k])
        for run in body["runs"]
        for k, tolerance in enumerate(run["tolerances"])
        for layer in run["layers"]
        for i, epoch in enumerate(run["epochs"])
    ]
    got = [
        (int(r["run_id"]), r["name"], float(r["weight_decay"]), r["basis"], float(r["tolerance"]))
        + (int(r["epoch"]), int(r["layer"]), int(r["parameters"]))
        + (int(r["constant"]), float(r["percent"]))
        for r in table
    ]
    assert got == expected
    assert [r[0] for r in got[:1]] + [r[0] for r in got[-1:]] == [second, first]
    # Each run's rows are its own spectrum table's.
    own = get_csv(client, f"/runs/{first}/spectrum")
    assert [(r["constant"], r["percent"]) for r in table if r["run_id"] == str(first)] == [
        (r["constant"], r["percent"]) for r in own
    ]


@pytest.mark.parametrize("path", ["/runs/{id}/units", "/runs/{id}/spectrum", "/compare/spectrum"])
def test_the_mechanism_views_answer_accept_text_csv(client, play, tiny_spec, path):
    run_id = mechanism_run(play, tiny_spec).run_id
    url = path.format(id=run_id)
    params = {"runs": str(run_id)} if "compare" in path else {}
    by_accept = client.get(url, params=params, headers={"Accept": "text/csv"})
    assert by_accept.status_code == 200 and by_accept.headers["content-type"] == CSV
    assert by_accept.headers["vary"] == "Accept"
    assert by_accept.text == client.get(url, params=params | {"format": "csv"}).text
    assert len(by_accept.text.splitlines()) > 1


def test_mechanism_csv_of_a_queued_run_is_a_header_and_of_an_old_run_a_json_404(
    client, play, tiny_spec
):
    old = play(tiny_spec(), epochs=1).run_id  # stored without the mechanism
    queued = client.post("/runs", json=tiny_spec(hidden_sizes=[8, 4])).json()["id"]
    for path in (f"/runs/{queued}/units", f"/runs/{queued}/spectrum"):
        response = client.get(path, params={"format": "csv"})
        assert response.status_code == 200 and len(response.text.splitlines()) == 1
    for path in (f"/runs/{old}/units", f"/runs/{old}/spectrum"):
        missing = client.get(path, params={"format": "csv"})
        assert missing.status_code == 404 and "trained before" in missing.json()["detail"]


def test_openapi_declares_csv_for_the_mechanism_views(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/runs/{run_id}/units", "/runs/{run_id}/spectrum", "/compare/spectrum"):
        content = paths[path]["get"]["responses"]["200"]["content"]
        assert {"application/json", "image/png", "text/csv"} <= set(content), path
        assert content["text/csv"]["schema"] == {"type": "string"}
        names = {p["name"] for p in paths[path]["get"]["parameters"]}
        assert "format" in names


@pytest.mark.parametrize(
    "accept,media",
    [
        ("text/csv", "text/csv"),
        ("text/csv, application/json;q=0.5", "text/csv"),
        ("application/json, text/csv;q=0.5", "application/json"),
        ("text/csv;q=0.5, image/png", "image/png"),
        ("*/*", "application/json"),
    ],
)
def test_accept_text_csv_asks_for_csv(client, play, tiny_spec, accept, media):
    run_id = play(tiny_spec(), epochs=1).run_id
    response = client.get(f"/runs/{run_id}/metrics", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].partition(";")[0] == media
    assert response.headers["vary"] == "Accept"


def test_csv_errors_are_json_like_every_error(client, play, tiny_spec):
    run_id = play(tiny_spec(), epochs=1).run_id
    missing = client.get(f"/runs/{run_id}/constancy", params={"tol": 0.5, "format": "csv"})
    assert missing.status_code == 404 and "0.5" in missing.json()["detail"]
    assert client.get("/runs/999/metrics", params={"format": "csv"}).status_code == 404


VIEWS = [
    ("/runs/{id}/metrics", {}),
    ("/runs/{id}/metrics", {"format": "csv"}),
    ("/runs/{id}/metrics", {"format": "png", "width": 400, "height": 300}),
    ("/runs/{id}/constancy", {"tol": 0}),
    ("/runs/{id}/constancy", {"format": "csv"}),
    ("/runs/{id}/weights", {"format": "csv"}),
    ("/ui/runs/{id}", {"part": "live"}),
    ("/runs/{id}", {}),
    ("/compare", {"runs": "{id}", "format": "csv"}),
]


@pytest.mark.parametrize("path,params", VIEWS, ids=[f"{p} {q}" for p, q in VIEWS])
def test_an_unchanged_view_answers_304_and_a_new_epoch_200(
    client, play, tiny_spec, db, path, params
):
    played = play(tiny_spec(epochs=5), epochs=2, finish=None)
    url = path.format(id=played.run_id)
    params = {k: str(v).format(id=played.run_id) for k, v in params.items()}
    first = client.get(url, params=params)
    tag = first.headers["etag"]
    assert first.status_code == 200 and tag.startswith('"') and len(tag) > 10
    again = client.get(url, params=params, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == tag
    # Weak comparison and lists, as caches send them.
    listed = client.get(url, params=params, headers={"If-None-Match": f'"other", W/{tag}'})
    assert listed.status_code == 304

    tensors = played.tensors
    with db.write() as session:
        jobs.record_epoch(
            session, played.lease, random_epoch(random.Random(9), 3, tensors, 4), lease_seconds=60
        )
    changed = client.get(url, params=params, headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag
    assert changed.content and changed.content != first.content


def test_the_same_view_in_two_formats_has_two_tags(client, play, tiny_spec):
    run_id = play(tiny_spec(), epochs=1).run_id
    tags = {
        client.get(f"/runs/{run_id}/metrics", params={"format": fmt}).headers["etag"]
        for fmt in ("json", "csv")
    }
    assert len(tags) == 2


def test_no_etag_on_errors_or_writes(client, tiny_spec):
    assert "etag" not in client.get("/runs/1").headers  # 404
    assert "etag" not in client.post("/runs", json=tiny_spec()).headers
