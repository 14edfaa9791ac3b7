"""The mechanism's API: /runs/{id}/units, /runs/{id}/spectrum, /compare/spectrum (JSON, PNG,
404s), and /constancy at tolerances a run did not measure (its spectrum, its snapshots)."""

import numpy as np
import pytest
from conftest import assert_drawn
from sqlalchemy import update
from test_constancy import numpy_counts

from server.core.experiment import SPECTRUM_TOLERANCES
from server.store.models import Run
from server.views import posthoc
from server.views.figures.draw import FigureOptions
from worker.loop import Worker

SPEC = dict(
    dataset="synthetic",
    hidden_sizes=[32, 16],
    train_size=512,
    test_size=128,
    batch_size=32,
    epochs=3,
    learning_rate=0.05,
)
SMALL = FigureOptions(width=600, height=450)
PNG = {"format": "png", "width": SMALL.width, "height": SMALL.height}


@pytest.fixture
def trained(client, db, settings):
    """Run ids of the seed's pair (no decay with snapshots, decay 0.001 without), trained."""
    ids = [
        client.post("/runs", json=SPEC | {"name": "baseline", "keep_snapshots": True}).json()["id"],
        client.post("/runs", json=SPEC | {"name": "decay", "weight_decay": 0.001}).json()["id"],
    ]
    Worker(settings, db).run(exit_when_idle=True)
    assert all(client.get(f"/runs/{i}").json()["status"] == "succeeded" for i in ids)
    return ids


def test_units_json_and_png(client, trained):
    baseline, decay = trained
    units = client.get(f"/runs/{baseline}/units").json()
    assert units["run_id"] == baseline and units["epochs"] == [1, 2, 3]
    assert [(h["layer"], h["units"]) for h in units["hidden"]] == [(0, 32), (1, 16)]
    for hidden in units["hidden"]:
        assert hidden["dead"] == [len(d) for d in hidden["dead_units"]]
        assert all(0 <= j < hidden["units"] for d in hidden["dead_units"] for j in d)
    weights = units["weights"]
    assert [(w["layer"], w["name"], w["parameters"]) for w in weights] == [
        (0, "layers.0.weight", 3072 * 32),
        (1, "layers.1.weight", 32 * 16),
        (2, "layers.2.weight", 16 * 10),
    ]
    for w in weights:
        assert len(w["constant"]) == len(w["explained"]) == 3
        assert all(
            0 <= e <= c <= w["parameters"]
            for c, e in zip(w["constant"], w["explained"], strict=True)
        )
    # Without decay dead units leave whole rows exactly unchanged; with it nothing stays put.
    assert sum(weights[0]["explained"]) > 0
    assert all(
        c == 0 for w in client.get(f"/runs/{decay}/units").json()["weights"] for c in w["constant"]
    )
    response = client.get(f"/runs/{baseline}/units", params=PNG)
    assert response.headers["content-type"] == "image/png"
    assert_drawn(response.content, SMALL)


def test_spectrum_json_and_png_and_exact_constancy_matches_units(client, trained):
    baseline, _ = trained
    spectrum = client.get(f"/runs/{baseline}/spectrum").json()
    assert spectrum["tolerances"] == SPECTRUM_TOLERANCES and spectrum["basis"] == "previous"
    assert spectrum["epochs"] == [1, 2, 3]
    units = client.get(f"/runs/{baseline}/units").json()
    for layer, weight in zip(spectrum["layers"], units["weights"], strict=True):
        assert len(layer["percent"]) == 3
        for per_epoch, constant in zip(layer["percent"], weight["constant"], strict=True):
            assert len(per_epoch) == len(SPECTRUM_TOLERANCES)
            assert per_epoch == sorted(per_epoch) and 0 <= per_epoch[0] <= per_epoch[-1] <= 100
            assert per_epoch[0] == 100 * constant / layer["parameters"]
    # The seed's tolerances are on the ladder: the same numbers as the run's own.
    for tol in (0.0, 0.001, 0.01, 0.1):
        own = client.get(f"/runs/{baseline}/constancy", params={"tol": tol}).json()
        k = SPECTRUM_TOLERANCES.index(tol)
        for layer, from_spectrum in zip(own["layers"], spectrum["layers"], strict=True):
            assert layer["percent"] == [p[k] for p in from_spectrum["percent"]]
    response = client.get(f"/runs/{baseline}/spectrum", headers={"Accept": "image/png"})
    assert response.headers["content-type"] == "image/png"


def test_compare_spectrum_json_and_png(client, trained):
    compared = client.get("/compare/spectrum", params={"runs": ",".join(map(str, trained))})
    assert compared.status_code == 200
    runs = compared.json()["runs"]
    assert [(r["run_id"], r["name"], r["weight_decay"]) for r in runs] == [
        (trained[0], "baseline", 0.0),
        (trained[1], "decay", 0.001),
    ]
    assert runs[0]["layers"] == client.get(f"/runs/{trained[0]}/spectrum").json()["layers"]
    response = client.get("/compare/spectrum", params={"runs": f"{trained[1]},{trained[0]}", **PNG})
    assert response.headers["content-type"] == "image/png"
    assert_drawn(response.content, SMALL)


def test_a_ladder_tolerance_is_answered_from_the_spectrum_without_snapshots(client, trained):
    _, decay = trained
    answer = client.get(f"/runs/{decay}/constancy", params={"tol": 1e-5})
    assert answer.status_code == 200 and answer.json()["tolerance"] == 1e-5
    spectrum = client.get(f"/runs/{decay}/spectrum").json()
    k = SPECTRUM_TOLERANCES.index(1e-5)
    assert answer.json()["layers"][1]["percent"] == [p[k] for p in spectrum["layers"][1]["percent"]]


def test_any_tolerance_from_snapshots_equals_numpy_and_is_cached(client, settings, trained):
    baseline, decay = trained
    files = settings.run_files(baseline)
    weights = [dict(np.load(files.snapshot(e))) for e in range(4)]
    for tol in (0.0123, 2.5e-4, 3.0):
        answer = client.get(f"/runs/{baseline}/constancy", params={"tol": tol}).json()
        assert answer["tolerance"] == tol and answer["epochs"] == [1, 2, 3]
        for layer in answer["layers"]:
            expected = [
                100
                * numpy_counts(a[layer["name"]], b[layer["name"]], [tol], "previous")[0]
                / layer["parameters"]
                for a, b in zip(weights[:-1], weights[1:], strict=True)
            ]
            assert layer["percent"] == expected
    # Cached: a second answer reads no snapshot.
    files.snapshots.rename(files.root / "moved")
    again = client.get(f"/runs/{baseline}/constancy", params={"tol": 0.0123})
    assert again.status_code == 200
    (files.root / "moved").rename(files.snapshots)
    # Without snapshots the 404 lists what the run has and what would allow any tolerance.
    missing = client.get(f"/runs/{decay}/constancy", params={"tol": 0.0123})
    assert missing.status_code == 404
    detail = missing.json()["detail"]
    assert "[0.0, 0.001, 0.01, 0.1]" in detail and "1.78e-07" in detail
    assert "keep_snapshots" in detail


def test_a_running_run_computes_only_its_new_epochs(client, db, trained):
    baseline, _ = trained
    with db.write() as session:  # as it was while its third epoch trained
        session.execute(update(Run).where(Run.id == baseline).values(epochs_done=2))
    posthoc._CACHE.clear()
    early = client.get(f"/runs/{baseline}/constancy", params={"tol": 0.042}).json()
    assert early["epochs"] == [1, 2] and len(posthoc._CACHE) == 2  # one entry per epoch
    with db.write() as session:
        session.execute(update(Run).where(Run.id == baseline).values(epochs_done=3))
    later = client.get(f"/runs/{baseline}/constancy", params={"tol": 0.042}).json()
    assert later["epochs"] == [1, 2, 3] and len(posthoc._CACHE) == 3
    assert [la["percent"][:2] for la in later["layers"]] == [
        la["percent"] for la in early["layers"]
    ]


def test_404s(client, play, tiny_spec, trained):
    assert client.get("/runs/999/units").status_code == 404
    assert client.get("/runs/999/spectrum").status_code == 404
    assert client.get("/compare/spectrum", params={"runs": f"{trained[0]},999"}).status_code == 404
    # A run stored before decaylab measured the mechanism (no run_mechanism row).
    old = play(tiny_spec(), epochs=2).run_id
    for path in (f"/runs/{old}/units", f"/runs/{old}/spectrum"):
        answer = client.get(path)
        assert answer.status_code == 404
        assert "trained before decaylab recorded" in answer.json()["detail"]
    compared = client.get("/compare/spectrum", params={"runs": f"{trained[0]},{old}"})
    assert (
        compared.status_code == 404
        and f"run {old} has no movement spectrum" in (compared.json()["detail"])
    )
    assert client.get(f"/runs/{old}/units", params=PNG).status_code == 404


def test_a_queued_run_answers_empty_views(client, tiny_spec):
    run_id = client.post("/runs", json=tiny_spec(hidden_sizes=[8, 4])).json()["id"]
    units = client.get(f"/runs/{run_id}/units").json()
    assert units["epochs"] == [] and [h["dead"] for h in units["hidden"]] == [[], []]
    spectrum = client.get(f"/runs/{run_id}/spectrum").json()
    assert spectrum["epochs"] == [] and spectrum["tolerances"] == SPECTRUM_TOLERANCES
    for path in (f"/runs/{run_id}/units", f"/runs/{run_id}/spectrum"):
        response = client.get(path, params=PNG)
        assert response.status_code == 200 and response.content.startswith(b"\x89PNG")


def test_compare_resolves_a_tolerance_as_the_run_views_do(client, trained):
    """One answer per question: /compare (and so `decaylab compare`) answers every tolerance
    the run's own constancy view answers, from the same place."""
    baseline, decay = trained

    def run_view(run_id: int, tol: float) -> dict:
        return client.get(f"/runs/{run_id}/constancy", params={"tol": tol}).json()

    # On the spectrum's ladder, for a run with snapshots and one without.
    compared = client.get("/compare", params={"runs": f"{decay},{baseline}", "tol": 1e-5})
    assert compared.status_code == 200, compared.text
    body = compared.json()
    assert body["tolerance"] == 1e-5 and [r["run_id"] for r in body["runs"]] == [decay, baseline]
    for entry in body["runs"]:
        assert entry["percent"] == run_view(entry["run_id"], 1e-5)["mean"]
    # Off the ladder: from the snapshots of the run that keeps them ...
    alone = client.get("/compare", params={"runs": baseline, "tol": 0.0123, "scope": "last2"})
    assert alone.status_code == 200
    assert alone.json()["runs"][0]["percent"] == run_view(baseline, 0.0123)["last_two_mean"]
    # ... and a 404 naming the run that has none, what it has, and what would allow it.
    missing = client.get("/compare", params={"runs": f"{baseline},{decay}", "tol": 0.0123})
    assert missing.status_code == 404
    detail = missing.json()["detail"]
    assert f"run {decay} has no results for tol=0.0123" in detail and "keep_snapshots" in detail
    assert f"run {baseline}" not in detail
    # The comparison's figure and table answer the same tolerance.
    png = client.get("/compare", params={"runs": f"{decay},{baseline}", "tol": 1e-5, **PNG})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    csv = client.get(
        "/compare", params={"runs": f"{decay},{baseline}", "tol": 1e-5, "format": "csv"}
    )
    assert csv.status_code == 200 and "1e-05" in csv.text
