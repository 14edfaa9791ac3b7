"""The view registry: each view declared once, and what comes from the declaration — its
routes and twins, the client's table, methods and CLI choices, the pages' panels, and the
answer cache that never serves a stale answer."""

import random
from pathlib import Path

import pytest
from conftest import random_epoch, train_all
from fastapi.testclient import TestClient

import decaylab
from decaylab import cli
from server.api.app import create_app
from server.core.schemas import RunStatus
from server.store import jobs
from server.views import registry

ROOT = Path(__file__).resolve().parent.parent
FORM = {"format", "width", "height", "dpi"}


def test_the_client_table_is_generated_from_the_registry():
    assert (ROOT / registry.CLIENT_TABLE).read_text() == registry.client_table(), (
        "decaylab/views.py is stale: python -m server.views.registry > decaylab/views.py"
    )


def test_every_view_has_its_route_twin_client_methods_and_cli_choice(client):
    paths = client.get("/openapi.json").json()["paths"]
    views = registry.load()
    assert set(views) == set(decaylab.views.VIEWS)
    for name, view in views.items():
        operation = paths[view.path]["get"]
        assert operation["operationId"] == view.function.__name__
        assert paths[view.path + ".png"]["get"]["operationId"] == f"{view.function.__name__}_png"
        query = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
        subject = {"runs"} if view.subject == "runs" else set()
        assert query == set(view.parameters) | subject | FORM, name
        assert callable(getattr(decaylab.Client, name))
        assert callable(getattr(decaylab.Client, f"{name}_png"))
        if view.subject == "run":
            assert name in cli.RUN_VIEWS
        if view.subject == "sweep":
            assert name.removeprefix("sweep_") in cli.SWEEP_VIEWS


def test_panels_name_declared_views_and_their_parameters():
    for place in ("run", "why", "compare", "each", "sweep"):
        for view, panel in registry.panels(place):
            assert set(panel.query) <= set(view.parameters), (view.name, panel)
            subject = (
                {"run", "runs"}
                if place == "compare"
                else {"sweep"}
                if place == "sweep"
                else {"run"}
            )
            assert view.subject in subject, (place, view.name)
    assert [v.name for v, _ in registry.panels("why")] == ["units", "spectrum", "causes"]
    assert [v.name for v, _ in registry.panels("each")] == ["causes"]


def test_a_view_cannot_be_declared_twice():
    with pytest.raises(ValueError, match="declared twice"):
        registry.view(
            "constancy",
            "/elsewhere",
            subject="run",
            summary="",
            model=None,
            draw=lambda *_: b"",
            not_found="",
            tags=[],
        )(lambda session: None)  # type: ignore[arg-type]


# --- the answer cache -------------------------------------------------------------------


def _urls(run_ids: list[int], sweep_id: int) -> list[tuple[str, dict]]:
    """Every view of the registry for these runs and sweep, with the parameters a page sends."""
    first, second = run_ids[:2]
    urls = []
    for view in registry.load().values():
        subject: int | list[int] = {"run": first, "runs": [second, first], "sweep": sweep_id}[
            view.subject
        ]
        path, query = view.url(subject)
        if "a" in view.parameters:  # the difference of two groups needs them, and a tolerance
            query |= {"a": 0, "b": 1, "tol": 0}
        urls.append((path, query))
    return urls


@pytest.fixture
def stored(client, db, play, tiny_spec):
    """Two finished runs with the mechanism measured, and a finished 2 × 2 sweep."""
    run_ids = [
        play(tiny_spec(name=f"r{i}"), epochs=3, seed=i, mechanism=True).run_id for i in range(2)
    ]
    base = {"dataset": "synthetic", "hidden_sizes": [32], "train_size": 512, "epochs": 2}
    grid = {"weight_decay": [0, 0.001], "seed": [0, 1]}
    sweep = client.post("/sweeps", json={"base": base, "grid": grid}).json()
    train_all(db, random.Random(3))
    return run_ids, sweep["id"]


def test_a_cached_answer_equals_a_fresh_one_for_every_view(client, settings, stored):
    fresh_settings = settings.model_copy(update={"view_cache_bytes": 0})
    cache = client.app.state.view_cache
    with TestClient(create_app(fresh_settings)) as fresh:
        for path, query in _urls(*stored):
            for fmt in ("json", "csv"):
                params = query | {"format": fmt}
                first = client.get(path, params=params)
                assert first.status_code == 200, (path, first.text)
                hits = cache.hits
                again = client.get(path, params=params)
                assert cache.hits == hits + 1, path  # served from the cache
                uncached = fresh.get(path, params=params)
                assert again.content == first.content == uncached.content, (path, fmt)
                assert again.headers["etag"] == uncached.headers["etag"]
    assert fresh.app.state.view_cache.cached_bytes == 0


def test_a_304_needs_no_computation(client, stored):
    (path, query), *_ = _urls(*stored)
    cache = client.app.state.view_cache
    tag = client.get(path, params=query).headers["etag"]
    computed, hits = cache.computed, cache.hits
    again = client.get(path, params=query, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b""
    assert (cache.computed, cache.hits) == (computed, hits)


@pytest.mark.backends("sqlite", "postgresql")
def test_a_new_epoch_a_cancel_and_a_delete_change_the_answer_at_once(client, db, play, tiny_spec):
    played = play(tiny_spec(epochs=5), epochs=2, finish=None)
    url = f"/runs/{played.run_id}/constancy"
    before = client.get(url)
    assert before.json()["results"][0]["epochs"] == [1, 2]
    record = random_epoch(random.Random(9), 3, played.tensors, 4)
    with db.write() as session:
        jobs.record_epoch(session, played.lease, record, lease_seconds=60)
    after_epoch = client.get(url)
    assert after_epoch.json()["results"][0]["epochs"] == [1, 2, 3]
    assert after_epoch.headers["etag"] != before.headers["etag"]
    # A cancel changes the run's stamp: its views are computed again (and answer the same
    # numbers, as a fresh computation would).
    computed = client.app.state.view_cache.computed
    assert client.post(f"/runs/{played.run_id}/cancel").status_code == 202
    with db.write() as session:
        jobs.finish_run(session, played.lease, RunStatus.cancelled)
    after_cancel = client.get(url)
    assert client.app.state.view_cache.computed == computed + 1
    assert after_cancel.headers["etag"] != after_epoch.headers["etag"]
    assert after_cancel.json() == after_epoch.json()
    assert client.delete(f"/runs/{played.run_id}").status_code == 204
    gone = client.get(url)
    assert gone.status_code == 404 and "not found" in gone.json()["detail"]


@pytest.mark.backends("sqlite", "postgresql")
def test_two_api_processes_on_one_database_never_serve_each_others_stale_answers(
    settings, db, play, tiny_spec
):
    """Each API process has its own cache; the stamp is read from the one database."""
    played = play(tiny_spec(epochs=5), epochs=1, finish=None)
    url = f"/compare?runs={played.run_id}"
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
        assert a.get(url).json()["results"][0]["runs"][0]["epochs"] == [1]
        assert b.get(url).json()["results"][0]["runs"][0]["epochs"] == [1]
        for epoch in (2, 3):
            record = random_epoch(random.Random(epoch), epoch, played.tensors, 4)
            with db.write() as session:
                jobs.record_epoch(session, played.lease, record, lease_seconds=60)
            for api in (a, b, a):
                answer = api.get(url).json()["results"][0]["runs"][0]
                assert answer["epochs"] == list(range(1, epoch + 1))
        with db.write() as session:
            jobs.finish_run(session, played.lease, RunStatus.succeeded)
        assert a.delete(f"/runs/{played.run_id}").status_code == 204
        assert b.get(url).status_code == 404
