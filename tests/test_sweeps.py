"""Sweeps: grid expansion and validation (all or nothing), statistics equal to a NumPy/SciPy
recomputation from the members' own views, priorities in the claim, cancel and delete, PNG and
CSV twins, and a sweep trained end to end by two real workers."""

import io
import random
import threading
from typing import Any

import numpy as np
import pytest
from conftest import run_of, train_all
from scipy import stats as scipy_stats
from sqlalchemy import func, select

from server.core.schemas import RunSpec, RunStatus
from server.core.settings import Settings
from server.store import crud, jobs
from server.store.models import Run, Sweep

BASE = {"dataset": "synthetic", "hidden_sizes": [8], "epochs": 4, "tolerances": [0, 0.01, 0.1]}


def post_sweep(client, grid: dict[str, list[Any]], **more: Any) -> dict[str, Any]:
    response = client.post("/sweeps", json={"name": "s", "base": BASE, "grid": grid, **more})
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/sweeps/{response.json()['id']}"
    return response.json()


def stored(db) -> tuple[int, int]:
    with db.reader() as session:
        runs = session.scalar(select(func.count()).select_from(Run))
        sweeps = session.scalar(select(func.count()).select_from(Sweep))
    return runs, sweeps


# --- expansion and validation ---


def test_a_sweep_is_the_grid_over_the_base_in_order_each_member_an_ordinary_run(client):
    sweep = post_sweep(client, {"weight_decay": [0, 0.001], "seed": [0, 1, 2]}, priority=3)
    assert sweep["status"] == "queued" and sweep["grid"] == {
        "weight_decay": [0, 0.001],
        "seed": [0, 1, 2],
    }
    runs = sweep["runs"]
    assert [(r["spec"]["weight_decay"], r["spec"]["seed"]) for r in runs] == [
        (wd, seed) for wd in (0, 0.001) for seed in (0, 1, 2)
    ]
    assert all(r["sweep_id"] == sweep["id"] and r["priority"] == 3 for r in runs)
    assert all(r["spec"]["hidden_sizes"] == [8] and r["spec"]["epochs"] == 4 for r in runs)
    assert runs[4]["name"] == "s: weight_decay=0.001, seed=1"
    assert sweep["progress"] == {
        "runs": 6,
        "by_status": {s.value: 6 * (s == "queued") for s in RunStatus},
        "epochs_done": 0,
        "epochs_total": 24,
    }
    # Every run view works on a member.
    listed = client.get("/runs").json()
    assert listed["total"] == 6
    assert client.get(f"/runs/{runs[0]['id']}").json()["sweep_id"] == sweep["id"]
    assert client.get(f"/sweeps/{sweep['id']}").json() == sweep
    page = client.get("/sweeps").json()
    assert page["total"] == 1 and page["sweeps"][0]["id"] == sweep["id"]
    assert "runs" not in page["sweeps"][0]


REFUSALS = [
    # (grid, base change, the loc every error must include, a word of its message)
    ({"weight_decay": [0, 0.1, -1]}, {}, ["body", "grid", "weight_decay", 2], "greater"),
    ({"weight_decay": [0, "x"]}, {}, ["body", "grid", "weight_decay", 1], "number"),
    ({"wd": [0, 1]}, {}, ["body", "grid", "wd"], "not a run spec field"),
    ({"name": ["a", "b"]}, {}, ["body", "grid", "name"], "not a run spec field"),
    ({"seed": []}, {}, ["body", "grid", "seed"], "at least 1"),
    ({"seed": [0, 1, 0]}, {}, ["body", "grid", "seed", 2], "repeats seed[0]"),
    # JSON's equality: 0.001 and 1e-3 are one number, 1 and 1.0 too.
    ({"weight_decay": [0.001, 1e-3]}, {}, ["body", "grid", "weight_decay", 1], "repeats"),
    ({"epochs": [1, 1.0]}, {}, ["body", "grid", "epochs", 1], "repeats epochs[0]"),
    ({"seed": None}, {}, ["body", "grid", "seed"], "list"),
    ({}, {}, ["body", "grid"], "at least one field"),
    ({"seed": [0, 1]}, {"epochs": 0}, ["body", "base", "epochs"], "greater"),
    ({"seed": [0, 1]}, {"colour": "red"}, ["body", "base", "colour"], "not a run spec field"),
    ({"seed": list(range(5))}, {}, ["body", "grid"], "DECAYLAB_MAX_SWEEP_RUNS"),
    # Only the largest model is too big: the limit names that value of the grid.
    ({"hidden_sizes": [[8], [8192] * 8]}, {}, ["body", "grid", "hidden_sizes", 1], "MAX_"),
]


@pytest.fixture
def small_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_sweep_runs": 4})


@pytest.mark.parametrize(("grid", "base", "loc", "word"), REFUSALS)
def test_an_invalid_member_refuses_the_whole_sweep_and_stores_nothing(
    small_settings, db, grid, base, loc, word
):
    from fastapi.testclient import TestClient

    from server.api.app import create_app

    with TestClient(create_app(small_settings)) as client:
        body = {"base": BASE | base, "grid": grid}
        response = client.post("/sweeps", json=body)
        assert response.status_code == 422, response.text
        errors = response.json()["detail"]
        assert any(e["loc"] == loc and word in e["msg"] for e in errors), errors
        assert stored(db) == (0, 0)
        assert client.get("/sweeps").json()["total"] == 0


def test_every_error_of_a_sweep_in_one_answer_with_0_based_positions(client, db):
    """Types, bounds, repeats and a member's resource limit, all in one 422 (issue 20, item 5)."""
    body = {
        "base": BASE | {"momentum": 2, "colour": "red"},
        "grid": {
            "weight_decay": [0, -1, "abc"],
            "seed": [0, 0],
            "hidden_sizes": [[8], [99999], [8192] * 8],
        },
    }
    response = client.post("/sweeps", json=body)
    assert response.status_code == 422, response.text
    found = {(tuple(e["loc"]), e["type"]) for e in response.json()["detail"]}
    assert found == {
        (("body", "base", "momentum"), "less_than"),
        (("body", "base", "colour"), "extra_forbidden"),
        (("body", "grid", "weight_decay", 1), "greater_than_equal"),
        (("body", "grid", "weight_decay", 2), "float_type"),
        (("body", "grid", "seed", 1), "value_error"),
        (("body", "grid", "hidden_sizes", 1, 0), "less_than_equal"),
        # Checked on the members made of the values that passed the rest.
        (("body", "grid", "hidden_sizes", 2), "resource_limit"),
    }
    assert stored(db) == (0, 0)


def test_a_base_field_the_grid_overrides_is_still_validated(client, db):
    body = {"base": BASE | {"seed": -(2**64)}, "grid": {"seed": [0, 1]}}
    errors = client.post("/sweeps", json=body).json()["detail"]
    assert [e["loc"] for e in errors] == [["body", "base", "seed"]]
    # A rule across fields is the members': CIFAR-10's sizes do not bind a synthetic member.
    body = {
        "base": BASE | {"dataset": "cifar10", "test_size": 10001},
        "grid": {"dataset": ["synthetic"]},
    }
    assert client.post("/sweeps", json=body).status_code == 201
    body["grid"]["dataset"] = ["synthetic", "cifar10"]
    errors = client.post("/sweeps", json=body).json()["detail"]
    assert [(e["loc"], e["type"]) for e in errors] == [
        (["body", "base", "test_size"], "dataset_size")
    ]


def test_the_grid_keeps_its_order_and_the_base_what_it_stated(client):
    sweep = post_sweep(client, {"seed": [1, 0], "epochs": [2, 1.0], "weight_decay": [0.1, 0]})
    assert list(sweep["grid"]) == ["seed", "epochs", "weight_decay"]
    assert sweep["grid"]["epochs"] == [2, 1] and sweep["base"] == BASE
    assert [r["spec"]["seed"] for r in sweep["runs"]][:5] == [1, 1, 1, 1, 0]


def test_a_base_error_is_reported_once_not_per_member(client, db):
    body = {"base": BASE | {"momentum": 2}, "grid": {"seed": [0, 1, 2, 3]}}
    errors = client.post("/sweeps", json=body).json()["detail"]
    assert [e["loc"] for e in errors] == [["body", "base", "momentum"]]
    assert stored(db) == (0, 0)


# --- statistics ---


def sample_stats(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The reference: mean ∓ t.ppf(0.975, n−1) · sd(ddof=1) / √n; no interval for n = 1."""
    n = samples.shape[0]
    mean = samples.mean(axis=0)
    if n == 1:
        return mean, None, None
    half = scipy_stats.t.ppf(0.975, n - 1) * samples.std(axis=0, ddof=1) / np.sqrt(n)
    return mean, mean - half, mean + half


def assert_close(actual: list[float] | None, expected: np.ndarray | None) -> None:
    if expected is None:
        assert actual is None
    else:
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)


@pytest.fixture
def trained(client, db) -> dict[str, Any]:
    """A finished sweep of 3 weight decays × 3 seeds with random counts; one member of the
    last group stopped after 3 of 4 epochs."""
    sweep = post_sweep(client, {"weight_decay": [0, 0.0001, 0.01], "seed": [0, 1, 2]})
    short = sweep["runs"][-1]["id"]
    train_all(db, random.Random(7), {short: 3})
    return client.get(f"/sweeps/{sweep['id']}").json()


def member_series(client, run_id: int, tol: float, scope: str) -> list[float]:
    view = client.get(f"/runs/{run_id}/constancy", params={"tol": tol}).json()
    if scope.isdigit():
        return view["layers"][int(scope)]["percent"]
    return view["mean" if scope == "all" else "last_two_mean"]


@pytest.mark.parametrize("scope", ["all", "last2", "1"])
def test_group_statistics_equal_a_scipy_recomputation_from_the_members_views(
    client, trained, scope
):
    sweep_id = trained["id"]
    body = client.get(f"/sweeps/{sweep_id}/constancy", params={"tol": 0.01, "scope": scope}).json()
    assert body["by"] == ["weight_decay"] and body["tolerance"] == 0.01
    runs = trained["runs"]
    assert [g["values"] for g in body["groups"]] == [
        {"weight_decay": wd} for wd in (0.0, 0.0001, 0.01)
    ]
    for i, group in enumerate(body["groups"]):
        ids = [r["id"] for r in runs[3 * i : 3 * i + 3]]
        assert group["run_ids"] == ids and group["n"] == 3
        series = [member_series(client, rid, 0.01, scope) for rid in ids]
        length = min(map(len, series))  # the last group: 3 epochs, as its shortest run
        assert group["epochs"] == list(range(1, length + 1)) == [1, 2, 3, 4][: 3 if i == 2 else 4]
        mean, low, high = sample_stats(np.array([s[:length] for s in series]))
        assert_close(group["mean"], mean)
        assert_close(group["ci_low"], low)
        assert_close(group["ci_high"], high)


def test_every_tolerance_by_other_fields_and_single_runs_without_interval(client, trained):
    sweep_id = trained["id"]
    every = client.get(f"/sweeps/{sweep_id}/constancy").json()
    assert every["tolerances"] == [0.0, 0.01, 0.1] and len(every["results"]) == 3
    singles = client.get(
        f"/sweeps/{sweep_id}/constancy", params={"tol": 0, "by": "weight_decay,seed"}
    ).json()
    assert len(singles["groups"]) == 9
    for group, run in zip(singles["groups"], trained["runs"], strict=True):
        assert group["n"] == 1 and group["ci_low"] is None and group["ci_high"] is None
        assert group["mean"] == member_series(client, run["id"], 0, "all")
    one = client.get(f"/sweeps/{sweep_id}/constancy", params={"tol": 0, "by": ""}).json()
    assert len(one["groups"]) == 1 and one["groups"][0]["n"] == 9
    bad = client.get(f"/sweeps/{sweep_id}/constancy", params={"by": "colour"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "by", 0]
    twice = client.get(f"/sweeps/{sweep_id}/constancy", params={"by": ["seed", "seed"]})
    assert twice.status_code == 422 and "distinct" in twice.json()["detail"][0]["msg"]
    assert client.get(f"/sweeps/{sweep_id}/constancy", params={"tol": 0.5}).status_code == 404
    assert client.get(f"/sweeps/{sweep_id}/constancy", params={"scope": 9}).status_code == 404
    assert client.get("/sweeps/999/constancy").status_code == 404


def test_metrics_summary_and_differences_equal_the_recomputation(client, trained):
    sweep_id = trained["id"]
    runs = trained["runs"]
    groups = [[r["id"] for r in runs[3 * i : 3 * i + 3]] for i in range(3)]

    metrics = client.get(f"/sweeps/{sweep_id}/metrics").json()
    for group, ids in zip(metrics["groups"], groups, strict=True):
        views = [client.get(f"/runs/{rid}/metrics").json() for rid in ids]
        length = len(group["epochs"])
        for name in ("train_loss", "test_accuracy"):
            mean, low, high = sample_stats(np.array([v[name][:length] for v in views]))
            assert_close(group[name]["mean"], mean)
            assert_close(group[name]["ci_low"], low)
            assert_close(group[name]["ci_high"], high)

    # Dose-response at the last epoch every group has (3: the last group's shortest run).
    summary = client.get(f"/sweeps/{sweep_id}/summary", params={"scope": "means"}).json()
    assert summary["epoch"] == 3 and summary["x"] == "weight_decay"
    assert summary["tolerances"] == [0.0, 0.01, 0.1]
    at = summary["results"][1]
    assert at["tolerance"] == 0.01 and [ln["scope"] for ln in at["lines"]] == ["all", "last2"]
    for line in at["lines"]:
        for point, ids in zip(line["points"], groups, strict=True):
            values = np.array([[member_series(client, rid, 0.01, line["scope"])[2]] for rid in ids])
            mean, low, high = sample_stats(values)
            assert point["mean"] == pytest.approx(mean[0], abs=1e-12)
            assert point["ci_low"] == pytest.approx(low[0], abs=1e-12)
            assert point["sd"] == pytest.approx(values.std(ddof=1), abs=1e-12)
    layers = client.get(
        f"/sweeps/{sweep_id}/summary", params={"tol": 0, "scope": "layers", "epoch": 1}
    ).json()
    assert [ln["scope"] for ln in layers["results"][0]["lines"]] == ["0", "1", "2", "3"]
    late = client.get(f"/sweeps/{sweep_id}/summary", params={"epoch": 4})
    assert late.status_code == 404 and "epochs 1..3" in late.json()["detail"]

    # Welch: group 1 − group 0.
    welch = client.get(
        f"/sweeps/{sweep_id}/difference", params={"a": 0, "b": 1, "tol": 0.1, "scope": "all"}
    ).json()
    a = np.array([member_series(client, rid, 0.1, "all") for rid in groups[0]])
    b = np.array([member_series(client, rid, 0.1, "all") for rid in groups[1]])
    for e in range(4):
        result = scipy_stats.ttest_ind(b[:, e], a[:, e], equal_var=False)
        interval = result.confidence_interval(0.95)
        assert welch["difference"][e] == pytest.approx(b[:, e].mean() - a[:, e].mean(), abs=1e-12)
        assert welch["df"][e] == pytest.approx(result.df, rel=1e-9)
        assert welch["ci_low"][e] == pytest.approx(interval.low, abs=1e-9)
        assert welch["ci_high"][e] == pytest.approx(interval.high, abs=1e-9)
    assert welch["method"] == "welch" and welch["pairs"] is None

    # Paired by seed: the same as a one-sample t interval of the per-seed differences.
    paired = client.get(
        f"/sweeps/{sweep_id}/difference",
        params={"a": 0, "b": 1, "tol": 0.1, "method": "paired"},
    ).json()
    assert paired["pairs"] == [list(p) for p in zip(groups[0], groups[1], strict=True)]
    for e in range(4):
        interval = scipy_stats.ttest_rel(b[:, e], a[:, e]).confidence_interval(0.95)
        assert paired["ci_low"][e] == pytest.approx(interval.low, abs=1e-9)
        assert paired["ci_high"][e] == pytest.approx(interval.high, abs=1e-9)
    missing = client.get(f"/sweeps/{sweep_id}/difference", params={"a": 0, "b": 3, "tol": 0})
    assert missing.status_code == 404


def test_png_and_csv_twins_of_every_sweep_view(client, trained):
    sweep_id = trained["id"]
    views = [
        ("constancy", {"tol": 0}),
        ("constancy", {"scope": "last2"}),
        ("metrics", {"metric": "accuracy"}),
        ("summary", {}),
        ("summary", {"scope": "layers", "by": "weight_decay,seed"}),
        ("difference", {"a": 0, "b": 2, "tol": 0}),
    ]
    for view, params in views:
        png = client.get(f"/sweeps/{sweep_id}/{view}", params=params | {"format": "png"})
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG"), (view, params)
        csv = client.get(f"/sweeps/{sweep_id}/{view}", params=params | {"format": "csv"})
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
        assert len(io.StringIO(csv.text).readlines()) > 1


# --- priorities ---


def test_priority_on_post_patch_and_sweep_is_shown_and_not_part_of_the_spec(client):
    run = client.post("/runs", params={"priority": 5}, json=BASE).json()
    assert run["priority"] == 5 and "priority" not in run["spec"]
    assert client.post("/runs", params={"priority": 2**31}, json=BASE).status_code == 422
    patched = client.patch(f"/runs/{run['id']}", json={"priority": -2})
    assert patched.status_code == 200 and patched.json()["priority"] == -2
    assert client.patch(f"/runs/{run['id']}", json={"priority": "1"}).status_code == 422
    assert client.patch(f"/runs/{run['id']}", json={"epochs": 1}).status_code == 422
    assert client.patch("/runs/999", json={"priority": 1}).status_code == 404


PRIORITIES = [0, 0, 5, 0, 5, -1, 9, 0]


def submit_prioritised(db) -> tuple[list[int], list[int]]:
    """Runs of PRIORITIES (the last one raised to 7 afterwards); returns their ids and the order
    a claim must take them in: higher priority first, then the oldest."""
    spec = RunSpec.model_validate(BASE)
    with db.write() as session:
        ids = [crud.create_run(session, spec, priority=p).id for p in PRIORITIES]
    with db.write() as session:
        crud.set_priority(session, ids[-1], 7)
    priority = dict(zip(ids, [*PRIORITIES[:-1], 7], strict=True))
    return ids, sorted(ids, key=lambda i: (-priority[i], i))


@pytest.mark.backends("sqlite", "postgresql")
def test_claims_take_higher_priority_first_then_the_oldest(db):
    _, expected = submit_prioritised(db)
    claimed = []
    while True:
        with db.write() as session:
            got = jobs.claim_run(session, "w:1", lease_seconds=60)
        if got is None:
            break
        claimed.append(got.lease.run_id)
    assert claimed == expected


@pytest.mark.backends("sqlite", "postgresql")
def test_concurrent_claims_honour_priorities_and_claim_each_run_once(db):
    ids, expected = submit_prioritised(db)
    claimed: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def claim(name: str) -> None:
        barrier.wait()
        while True:
            with db.write() as session:
                got = jobs.claim_run(session, name, lease_seconds=60)
                with lock:  # the order in which claims commit
                    if got is not None:
                        claimed.append(got.lease.run_id)
            if got is None:
                return

    threads = [threading.Thread(target=claim, args=(f"w:{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == ids  # each run claimed exactly once
    # Each claim takes the best run no other claim holds at that moment (PostgreSQL: SKIP
    # LOCKED), so with 4 claimers a run commits at most 3 places from its rank.
    for position, run_id in enumerate(claimed):
        assert abs(expected.index(run_id) - position) <= 3, (claimed, expected)


# --- cancel and delete ---


@pytest.mark.backends("sqlite", "postgresql")
def test_cancel_and_delete_a_sweep_with_a_running_member(client, db, settings):
    sweep = post_sweep(client, {"seed": [0, 1, 2]})
    ids = [r["id"] for r in sweep["runs"]]
    with db.write() as session:
        claim = jobs.claim_run(session, "w:1", lease_seconds=60)
    assert claim is not None and claim.lease.run_id == ids[0]
    files = settings.run_files(ids[0])
    files.root.mkdir(parents=True)
    (files.root / "checkpoint").write_bytes(b"x")
    assert client.get(f"/sweeps/{sweep['id']}").json()["status"] == "running"

    deleted = client.delete(f"/sweeps/{sweep['id']}")
    assert deleted.status_code == 409 and str(ids[0]) in deleted.json()["detail"]
    cancelled = client.post(f"/sweeps/{sweep['id']}/cancel")
    assert cancelled.status_code == 202
    body = cancelled.json()
    assert [r["status"] for r in body["runs"]] == ["running", "cancelled", "cancelled"]
    assert body["runs"][0]["cancel_requested"] and body["status"] == "running"
    # The worker sees the flag at its next heartbeat and stops.
    with db.write() as session:
        assert jobs.renew_lease(session, claim.lease, 60) is True
        jobs.finish_run(session, claim.lease, RunStatus.cancelled)
    assert client.get(f"/sweeps/{sweep['id']}").json()["status"] == "cancelled"
    assert client.post(f"/sweeps/{sweep['id']}/cancel").status_code == 409

    assert client.delete(f"/sweeps/{sweep['id']}").status_code == 204
    assert client.get(f"/sweeps/{sweep['id']}").status_code == 404
    assert stored(db) == (0, 0) and not files.root.exists()
    assert client.delete(f"/sweeps/{sweep['id']}").status_code == 404


def test_a_lapsed_member_is_cancelled_at_once_and_others_keep_their_sweep(client, db):
    sweep = post_sweep(client, {"seed": [0, 1]})
    other = client.post("/runs", json=BASE).json()["id"]
    with db.write() as session:
        jobs.claim_run(session, "w:1", lease_seconds=-1)  # its lease has lapsed already
    body = client.post(f"/sweeps/{sweep['id']}/cancel").json()
    assert [r["status"] for r in body["runs"]] == ["cancelled", "cancelled"]
    assert body["status"] == "cancelled"
    assert run_of(db, other).status == "queued"


# --- end to end ---


@pytest.mark.slow
def test_a_sweep_runs_end_to_end_on_two_real_workers(processes, tiny_spec):
    processes.start_server()
    workers = [processes.start_worker(), processes.start_worker()]
    body = {"name": "e2e", "base": tiny_spec(), "grid": {"weight_decay": [0, 1e-3], "seed": [0, 1]}}
    created = processes.api("POST", "/sweeps", json=body)
    assert created.status_code == 201, created.text
    sweep = created.json()
    finished = [processes.wait_finished(r["id"], timeout=300) for r in sweep["runs"]]
    assert all(r["status"] == "succeeded" for r in finished), processes.logs()
    assert {r["worker"].rsplit(":", 1)[1] for r in finished} == {str(w.pid) for w in workers}
    now = processes.api("GET", f"/sweeps/{sweep['id']}").json()
    assert now["status"] == "succeeded" and now["progress"]["epochs_done"] == 12
    view = processes.api(
        "GET", f"/sweeps/{sweep['id']}/constancy", params={"tol": 0, "scope": "last2"}
    ).json()
    assert [g["n"] for g in view["groups"]] == [2, 2]
    assert all(g["epochs"] == [1, 2, 3] and g["ci_low"] is not None for g in view["groups"])
    png = processes.api("GET", f"/sweeps/{sweep['id']}/summary", params={"format": "png"})
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


# --- the document ---


def test_the_document_states_the_sweeps_contract(client):
    """base: RunSpec's fields, each optional with its own schema; grid: each field's distinct
    values of that schema; by: spec field names; the links; the 422's error types."""
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    spec = schemas["RunSpec"]["properties"]
    post = doc["paths"]["/sweeps"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body["additionalProperties"] is False and body["required"] == ["grid"]
    base = schemas["SweepBase"]
    assert base["properties"] == spec and "required" not in base
    assert base["additionalProperties"] is False and "if" not in base  # the grid may vary dataset
    grid = schemas["SweepGrid"]
    assert grid["additionalProperties"] is False and grid.get("required") is None
    assert set(grid["properties"]) == set(spec) - {"name"}
    for field, rule in grid["properties"].items():
        assert rule["type"] == "array" and rule["minItems"] == 1 and rule["uniqueItems"], field
        own = {k: v for k, v in spec[field].items() if k not in ("title", "default")}
        assert rule["items"] == own, field
    by = next(p for p in doc["paths"]["/sweeps/{sweep_id}/metrics"]["get"]["parameters"]
              if p["name"] == "by")  # fmt: skip
    listed = by["schema"]["anyOf"][0]
    assert listed["type"] == "array" and by["schema"]["uniqueItems"]
    assert listed["items"]["enum"] == [*spec, ""]
    # Links: a sweep to every operation on it, a run to its sweep.
    on_sweep = {
        op["operationId"]
        for path, ops in doc["paths"].items()
        if path.startswith("/sweeps/{sweep_id}")
        for op in ops.values()
    }
    for links in (
        post["responses"]["201"]["links"],
        doc["paths"]["/sweeps/{sweep_id}"]["get"]["responses"]["200"]["links"],
    ):
        # The views and their PNG twins, the reproduction, get, cancel and delete.
        assert set(links) == on_sweep | {"get_run"} and len(on_sweep) == 12
        assert links["get_sweep_metrics"]["parameters"]["path.sweep_id"] == "$response.body#/id"
    to_sweep = doc["paths"]["/runs/{run_id}"]["get"]["responses"]["200"]["links"]
    assert to_sweep["get_sweep"]["parameters"] == {"path.sweep_id": "$response.body#/sweep_id"}
    # The rules across fields: 422s with their own error types.
    for path in ("/runs", "/sweeps"):
        refused = doc["paths"][path]["post"]["responses"]["422"]
        assert "resource_limit" in refused["description"]
        assert refused["content"]["application/json"]["schema"]["$ref"].endswith("RefusedSpec")
    assert schemas["ResourceLimitError"]["properties"]["type"]["const"] == "resource_limit"
    assert schemas["DatasetSizeError"]["properties"]["type"]["const"] == "dataset_size"
