"""decaylab.Client against real API and worker processes (with a bearer token)."""

import io
import os
import subprocess
import sys

import pandas as pd
import pytest
from tqdm import tqdm

import decaylab
from decaylab.client import Event, _Progress
from server.processes import Processes

TOKEN = "client-s3cret"


@pytest.fixture
def served(tmp_path, db_url) -> Processes:
    """The API with a token, without a worker yet."""
    processes = Processes(tmp_path, lease_seconds="2", database_url=db_url, api_token=TOKEN)
    processes.start_server()
    yield processes
    processes.close()


def json_view(served: Processes, path: str, **params) -> dict:
    response = served.api("GET", path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.slow
def test_the_seed_pair_as_dataframes_equal_to_the_json_views(served, tiny_spec):
    client = decaylab.Client(url=served.url, token=TOKEN)
    runs = [client.submit(tiny_spec(), weight_decay=wd, name=f"wd {wd}") for wd in (0, 0.001)]
    assert [r.status for r in runs] == ["queued", "queued"]
    assert runs[1].spec["weight_decay"] == 0.001 and runs[1].name == "wd 0.001"
    served.start_worker("--exit-when-idle")
    done = client.wait(runs, progress=False)
    assert [(r.id, r.status, r.epochs_done) for r in done] == [
        (runs[0].id, "succeeded", 3),
        (runs[1].id, "succeeded", 3),
    ]
    assert set(client.runs(status="succeeded")["id"]) == {r.id for r in runs}
    first = runs[0].id

    metrics = client.metrics(first)
    body = json_view(served, f"/runs/{first}/metrics")
    wide = metrics.pivot(index="epoch", columns="metric", values="value")
    assert wide.index.tolist() == body["epochs"]
    for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "epoch_seconds"):
        assert wide[key].tolist() == body[key]

    constancy = client.constancy(first)
    body = json_view(served, f"/runs/{first}/constancy")
    assert sorted(constancy["tolerance"].unique()) == body["tolerances"]
    for result in body["results"]:
        rows = constancy[constancy["tolerance"] == result["tolerance"]]
        for layer in result["layers"]:
            series = rows[rows["layer"] == str(layer["index"])]
            assert series["percent"].tolist() == layer["percent"]
            assert (series["parameters"] == layer["parameters"]).all()
            assert (series["constant"] * 100 / layer["parameters"]).tolist() == layer["percent"]
        assert rows[rows["layer"] == "all"]["percent"].tolist() == result["mean"]
        assert rows[rows["layer"] == "last2"]["percent"].tolist() == result["last_two_mean"]
    one = client.constancy(first, tol=0)
    assert one.equals(constancy[constancy["tolerance"] == 0].reset_index(drop=True))

    weights = client.weights(first)
    body = json_view(served, f"/runs/{first}/weights")
    for layer in body["layers"]:
        assert (
            weights[weights["layer"] == str(layer["index"])]["variance"].tolist()
            == (layer["variance"])
        )

    ids = [r.id for r in runs]
    compared = client.compare(runs, tol=0, scope="last2")
    body = json_view(served, "/compare", runs=f"{ids[0]},{ids[1]}", tol=0, scope="last2")
    for run in body["runs"]:
        rows = compared[compared["run_id"] == run["run_id"]]
        assert rows["percent"].tolist() == run["percent"]
        assert rows["epoch"].tolist() == run["epochs"]
        assert set(rows["weight_decay"]) == {run["weight_decay"]}
    assert set(compared["layer"]) == {"last2"}
    assert isinstance(compared, pd.DataFrame)

    # Why weights stay constant: the DataFrames hold the JSON views' numbers.
    units = client.units(first)
    body = json_view(served, f"/runs/{first}/units")
    hidden = {h["layer"]: h for h in body["hidden"]}
    assert units["layer"].tolist() == [str(w["layer"]) for w in body["weights"] for _ in range(3)]
    for w in body["weights"]:
        rows = units[units["layer"] == str(w["layer"])]
        assert rows["epoch"].tolist() == body["epochs"] and set(rows["run_id"]) == {first}
        assert rows["constant"].tolist() == w["constant"]
        assert rows["explained"].tolist() == w["explained"]
        assert set(rows["name"]) == {w["name"]} and set(rows["parameters"]) == {w["parameters"]}
        if w["layer"] in hidden:
            assert rows["dead"].tolist() == hidden[w["layer"]]["dead"]
            assert set(rows["units"]) == {hidden[w["layer"]]["units"]}
        else:  # the output layer: no hidden layer after it
            assert rows["dead"].isna().all() and rows["units"].isna().all()

    spectrum = client.spectrum(first)
    body = json_view(served, f"/runs/{first}/spectrum")
    assert sorted(spectrum["tolerance"].unique()) == body["tolerances"]
    assert len(spectrum) == len(body["tolerances"]) * len(body["layers"]) * len(body["epochs"])
    for k, tolerance in enumerate(body["tolerances"]):
        at = spectrum[spectrum["tolerance"] == tolerance]
        for layer in body["layers"]:
            series = at[at["layer"] == str(layer["index"])]
            assert series["epoch"].tolist() == body["epochs"]
            assert series["percent"].tolist() == [p[k] for p in layer["percent"]]
            assert (series["constant"] * 100 / layer["parameters"]).tolist() == (
                series["percent"].tolist()
            )
    assert set(spectrum["basis"]) == {body["basis"]}
    side_by_side = client.compare_spectrum(reversed(runs))
    body = json_view(served, "/compare/spectrum", runs=f"{ids[1]},{ids[0]}")
    assert side_by_side["run_id"].unique().tolist() == [ids[1], ids[0]]
    for run in body["runs"]:
        rows = side_by_side[side_by_side["run_id"] == run["run_id"]]
        assert set(rows["weight_decay"]) == {run["weight_decay"]}
        assert rows["percent"].tolist() == [
            layer["percent"][i][k]
            for k in range(len(run["tolerances"]))
            for layer in run["layers"]
            for i in range(len(run["epochs"]))
        ]
    for figure in (
        client.units_png(first, width=400, height=300),
        client.spectrum_png(first),
        client.compare_spectrum_png(runs, width=600, height=500),
    ):
        assert figure.png.startswith(b"\x89PNG\r\n\x1a\n")

    figure = client.compare_png(runs, scope="all", width=400, height=300)
    assert figure._repr_png_().startswith(b"\x89PNG\r\n\x1a\n")
    assert client.constancy_png(first).png.startswith(b"\x89PNG")

    events = list(client.events(first))
    assert [e.kind for e in events] == ["epoch"] * 3 + ["end"]
    assert events[-1].data["status"] == "succeeded"


@pytest.mark.slow
def test_errors_carry_the_api_detail(served, tiny_spec):
    client = decaylab.Client(url=served.url, token=TOKEN)
    with pytest.raises(decaylab.NotFound) as missing:
        client.get(999)
    assert missing.value.status_code == 404 and "999" in missing.value.detail
    with pytest.raises(decaylab.InvalidRequest) as invalid:
        client.submit(tiny_spec(momentum=1.5))
    assert invalid.value.detail[0]["loc"] == ["body", "momentum"]
    assert "body.momentum" in str(invalid.value)
    run = client.submit(tiny_spec())
    assert client.cancel(run).status == "cancelled"
    with pytest.raises(decaylab.Conflict):
        client.cancel(run)
    with pytest.raises(decaylab.NotFound):
        client.constancy(run, tol=0.5)
    client.delete(run)
    with pytest.raises(decaylab.NotFound):
        client.get(run)
    with pytest.raises(decaylab.Unauthorized):
        decaylab.Client(url=served.url, token="wrong").runs()


def test_url_and_token_default_to_the_environment(monkeypatch):
    monkeypatch.setenv("DECAYLAB_URL", "http://example.invalid:9/")
    monkeypatch.setenv("DECAYLAB_API_TOKEN", "t0ken")
    client = decaylab.Client()
    assert client.url == "http://example.invalid:9"
    assert client._http.headers["authorization"] == "Bearer t0ken"
    monkeypatch.delenv("DECAYLAB_URL")
    assert decaylab.Client().url == "http://127.0.0.1:8000"


def test_an_unreachable_api_is_retried_then_raised():
    client = decaylab.Client(url="http://127.0.0.1:9", retries=1)
    with pytest.raises(decaylab.DecaylabError, match="cannot reach"):
        client.runs()


@pytest.mark.slow
def test_runs_as_a_table_filtered_short_reprs_and_compare_in_the_order_given(served, tiny_spec):
    client = decaylab.Client(url=served.url, token=TOKEN)
    assert repr(client) == f"<decaylab.Client {served.url} with a token>"
    assert TOKEN not in repr(client)
    sweep = client.submit_sweep(tiny_spec(epochs=1), {"weight_decay": [0, 0.001]}, name="s")
    alone = client.submit(tiny_spec(epochs=1, weight_decay=0.01), name="alone")
    assert repr(alone) == (
        f"<Run {alone.id} 'alone' queued 0/1 epochs, synthetic, weight_decay=0.01>"
    )
    assert repr(sweep).startswith(f"<Sweep {sweep.id} 's' queued 2 runs: weight_decay=")

    table = client.runs()
    assert table["id"].tolist() == [alone.id, *reversed([r.id for r in sweep.runs])]
    assert {"name", "status", "sweep_id", "weight_decay", "hidden_sizes", "seed"} <= set(table)
    assert table.loc[table["id"] == alone.id, "hidden_sizes"].item() == [32]
    assert client.runs(name="alone")["id"].tolist() == [alone.id]
    assert client.runs(sweep=sweep)["id"].tolist() == [r.id for r in sweep.runs]
    assert client.runs(weight_decay=0.001, dataset="synthetic")["id"].tolist() == [sweep.runs[1].id]
    assert client.runs(status="queued", limit=2)["id"].tolist() == table["id"].tolist()[:2]
    none = client.runs(status="succeeded")
    assert none.empty and "weight_decay" not in none and "sweep_id" in none
    with pytest.raises(decaylab.DecaylabError, match="weight_decy"):
        client.runs(weight_decy=0)

    served.start_worker("--exit-when-idle")
    ids = [alone.id, sweep.runs[0].id]  # not in id order
    client.wait(ids, progress=False)
    compared = client.compare(ids, tol=0)
    assert compared["run_id"].drop_duplicates().tolist() == ids
    cli = subprocess.run(
        [sys.executable, "-m", "decaylab", "compare", *map(str, ids), "--tol", "0"],
        env=os.environ | {"DECAYLAB_URL": served.url, "DECAYLAB_API_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        check=True,
    )
    header = next(line for line in cli.stdout.splitlines() if "(wd" in line)
    assert header.index(f"run {ids[0]} ") < header.index(f"run {ids[1]} ")


def test_the_progress_rate_counts_neither_the_queue_nor_replayed_epochs():
    """A run's bar, fed its events on a clock of our own: 100 s queued behind another run, then
    two epochs in 4 s, watched from the start (and a finished run watched afterwards, its
    stored epochs replayed at once)."""
    now = [1000.0]
    out = io.StringIO()
    bar = tqdm(desc="run 1", unit="epoch", file=out, mininterval=0, ascii=True)
    bar._time = lambda: now[0]
    bar.reset()
    shown = _Progress(bar)

    def status(name: str, done: int) -> Event:
        return Event("status", {"run_id": 1, "status": name, "epochs": 4, "epochs_done": done})

    def epoch(number: int) -> Event:
        data = {"epoch": number, "train_loss": 1.0, "test_accuracy": 0.5, "constant_mean": 3.0}
        return Event("epoch", data)

    shown.show(status("queued", 0))
    now[0] += 100  # in the queue
    shown.show(status("running", 0))
    for number in (1, 2):
        now[0] += 2
        shown.show(epoch(number))
    assert bar.format_dict["elapsed"] == pytest.approx(4)
    last = out.getvalue().replace("\r", "\n").strip().splitlines()[-1]
    # 2 epochs in 4 s: 2 s an epoch, 4 s left (counting the queue: 51 s an epoch, 102 s left).
    assert "2/4 [00:04<00:04,  2.00s/epoch" in last, last

    # A run already finished: its stored epochs come at once, and no rate is claimed for them.
    replay = tqdm(desc="run 2", unit="epoch", file=io.StringIO(), mininterval=0)
    replay._time = lambda: now[0]
    replay.reset()
    shown = _Progress(replay)
    shown.show(Event("status", {"run_id": 2, "status": "succeeded", "epochs": 4, "epochs_done": 4}))
    assert replay.format_dict["n"] - replay.format_dict["initial"] == 0
