"""decaylab.Client against real API and worker processes (with a bearer token)."""

import pandas as pd
import pytest

import decaylab
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
    assert {r.id for r in client.runs(status="succeeded")} == {r.id for r in runs}
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
