"""Property-based fuzzing of every endpoint: never a 5xx, every 4xx says what is wrong in a
``detail``, and a refused POST stores nothing.

Hypothesis generates JSON bodies (anything, spec-shaped, and a valid spec with one field
replaced), raw byte bodies, and arbitrary path, query and Accept values for every operation of
the OpenAPI document, PNG views included. Runs are derandomized, so CI sees the same cases every
time; the number tried is printed at the end of the module (see docs/hardening.md).
"""

import itertools
import json
import math
import random
from collections import Counter
from typing import Any
from urllib.parse import quote

import pytest
from conftest import train_all
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from server.core.schemas import SEED_MAX, SEED_MIN, RunSpec
from server.store.db import Database
from server.store.models import Run, Sweep

# PostgreSQL too: its types are narrower than SQLite's (a 32-bit INTEGER, text without NUL).
pytestmark = pytest.mark.backends("sqlite", "postgresql")

EXAMPLES = 300
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CASES: Counter[tuple[str, int]] = Counter()  # (operation group, status) -> cases
SERVER_ERRORS: list[str] = []

# Lone surrogates are valid JSON escapes but no UTF-8: they must not break an echoing 422.
characters = st.one_of(st.characters(), st.characters(categories=["Cs"]))
text = st.text(characters, max_size=20)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, text)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(text, inner, max_size=6)),
    max_leaves=20,
)
FIELDS = list(RunSpec.model_fields)
VALID = {"dataset": "synthetic", "hidden_sizes": [8], "train_size": 64, "epochs": 1}
spec_bodies = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from([*FIELDS, "wd", ""]), json_values, max_size=5),
    st.builds(lambda field, value: VALID | {field: value}, st.sampled_from(FIELDS), json_values),
)
# Values a query or path might carry: plausible tokens, numbers of any size, and junk.
TOKENS = ["1", "2", "0", "-1", "1,2", "2,1", "1,1", "all", "last2", "layers", "png", "json",
          "loss", "accuracy", "0.001", "200", "50", "4000", "nan", "inf", "-inf", "1e400", "",
          ",", "1,", "succeeded", "running", "true", "9223372036854775808"]  # fmt: skip
query_values = st.one_of(
    st.sampled_from(TOKENS),
    numbers.map(str),
    st.lists(st.integers(min_value=-5, max_value=60).map(str), max_size=60).map(",".join),
    text,
)
QUERY_NAMES = ["tol", "runs", "scope", "format", "width", "height", "dpi", "limit", "offset",
               "status", "metric", "epoch", "by", "a", "b", "method"]  # fmt: skip
accept = st.sampled_from(
    ["", "*/*", "image/png", "application/json", "image/*;q=0.5, application/json;q=nan",
     "image/png;q=inf", "image/png;q=x, */*;q=-1", "text/html"]
)  # fmt: skip


class Summary:
    """A pytest plugin: the cases tried and the 5xx seen, in the terminal summary (see
    docs/hardening.md)."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.write_line(
            f"fuzz: {sum(CASES.values())} cases, server errors: {len(SERVER_ERRORS)}"
        )
        for group in sorted({group for group, _ in CASES}):
            statuses = {s: n for (g, s), n in sorted(CASES.items()) if g == group}
            total = sum(statuses.values())
            terminalreporter.write_line(f"  {group}: {total} cases, by status {statuses}")


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> None:
    plugins = request.config.pluginmanager
    if not plugins.has_plugin("decaylab-fuzz"):
        plugins.register(Summary(), "decaylab-fuzz")


@pytest.fixture
def seeded(play, tiny_spec, db) -> list[int]:
    """A finished run with results, one still running, one queued."""
    finished = play(tiny_spec(keep_snapshots=True), epochs=3).run_id
    running = play(tiny_spec(), epochs=1, finish=None, seed=1).run_id
    # Sweep 1 has both as its members (one group of two).
    with db.write() as session:
        session.add(Sweep(id=1, name="fuzz", base={}, grid={"seed": [0, 1]}, priority=0))
        session.flush()
        session.execute(update(Run).values(sweep_id=1))
    return [finished, running]


def stored(db: Database) -> int:
    with db.reader() as session:
        return session.scalar(select(func.count()).select_from(Run)) or 0


def check(group: str, response: Any) -> None:
    """The contract every answer keeps, whatever was asked."""
    CASES[group, response.status_code] += 1
    label = f"{response.request.method} {response.request.url}"
    if response.status_code >= 500:
        SERVER_ERRORS.append(label)
    assert response.status_code < 500, f"{label} -> {response.status_code}: {response.text}"
    if response.request.method == "HEAD":
        assert not response.content, label
    elif response.status_code >= 400:
        assert response.headers["content-type"] == "application/json", label
        assert response.json()["detail"], label
    elif response.headers.get("content-type") == "image/png":
        assert response.content.startswith(b"\x89PNG\r\n\x1a\n"), label


def post_is_all_or_nothing(client: TestClient, db: Database, body: bytes, ctype: str) -> None:
    before = stored(db)
    response = client.post("/runs", content=body, headers={"content-type": ctype})
    check("POST /runs", response)
    if response.status_code == 201:
        assert stored(db) == before + 1
        assert RunSpec.model_validate(response.json()["spec"])
    else:
        assert response.status_code in (400, 413, 422), response.text
        assert stored(db) == before


@FUZZ
@given(body=spec_bodies)
def test_fuzz_post_runs_with_json(lenient, db, body):
    post_is_all_or_nothing(lenient, db, json.dumps(body).encode(), "application/json")


@FUZZ
@given(
    body=st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v)[:-1].encode()),  # cut short
        st.just(b"x" * 70_000),  # over the default 64 KiB body limit
    ),
    ctype=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                           "multipart/form-data", "", "application/vnd.api+json"]),
)  # fmt: skip
def test_fuzz_post_runs_with_raw_bytes(lenient, db, body, ctype):
    post_is_all_or_nothing(lenient, db, body, ctype)


def operations(client: TestClient) -> list[tuple[str, str]]:
    paths = client.get("/openapi.json").json()["paths"]
    return [(method.upper(), path) for path, ops in paths.items() for method in ops]


@FUZZ
@given(data=st.data())
def test_fuzz_every_read_endpoint(lenient, seeded, data):
    # The event stream lasts as long as its run (tests/test_events.py reads it); its 404 and 422
    # answers are the other run views'.
    reads = [
        op
        for op in operations(lenient)
        if op[0] in ("GET", "HEAD") and not op[1].endswith("/events")
    ]
    method, path = data.draw(st.sampled_from(reads))
    for name in ("run_id", "epoch", "sweep_id"):
        if f"{{{name}}}" in path:
            value = data.draw(st.one_of(st.sampled_from(["1", "2", "3", "0"]), query_values))
            path = path.replace(f"{{{name}}}", quote(value, safe="", errors="surrogatepass") or "1")
    params = data.draw(st.dictionaries(st.sampled_from(QUERY_NAMES), query_values, max_size=4))
    headers = {"accept": data.draw(accept)}
    check(f"{method} (all reads)", lenient.request(method, path, params=params, headers=headers))


@FUZZ
@given(
    method=st.sampled_from(["POST", "DELETE"]),
    run_id=st.one_of(st.sampled_from(["1", "2", "3"]), query_values),
)
def test_fuzz_cancel_and_delete(lenient, db, seeded, method, run_id):
    path = f"/runs/{quote(run_id, safe='', errors='surrogatepass') or '1'}"
    if method == "POST":
        path += "/cancel"
    check(f"{method} (cancel, delete)", lenient.request(method, path))


# Without it, a body is no JSON to the API (422 whatever it holds).
JSON = {"content-type": "application/json"}
SWEEP_FIELDS = ["name", "base", "grid", "priority", "seeds", ""]
sweep_bodies = st.one_of(
    st.just({"base": VALID, "grid": {"seed": [0, 1]}}),
    json_values,
    st.dictionaries(st.sampled_from(SWEEP_FIELDS), json_values, max_size=4),
    st.builds(
        lambda field, values: {"base": VALID, "grid": {field: values}},
        st.sampled_from([*FIELDS, "wd"]),
        st.one_of(st.lists(json_values, max_size=4), json_values),
    ),
    st.builds(lambda body: {"base": body, "grid": {"seed": [0, 1]}}, spec_bodies),
)


def sweeps_stored(db: Database) -> int:
    with db.reader() as session:
        return session.scalar(select(func.count()).select_from(Sweep)) or 0


@FUZZ
@given(body=sweep_bodies)
def test_fuzz_post_sweeps_is_all_or_nothing(lenient, db, body):
    before = stored(db), sweeps_stored(db)
    response = lenient.post("/sweeps", content=json.dumps(body).encode(), headers=JSON)
    check("POST /sweeps", response)
    if response.status_code == 201:
        runs = len(response.json()["runs"])
        assert (stored(db), sweeps_stored(db)) == (before[0] + runs, before[1] + 1)
    else:
        assert response.status_code in (400, 413, 422), response.text
        assert (stored(db), sweeps_stored(db)) == before


# Valid sweeps, small enough for a pretend worker: each spec field's values of its schema.
names = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=30)
TINY_BASE = VALID | {"test_size": 32, "epochs": 1, "tolerances": [0, 0.01]}
fractions = st.floats(min_value=0, max_value=0.1, allow_nan=False)
GRID_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "weight_decay": fractions,
    "learning_rate": st.floats(min_value=1e-4, max_value=0.5),
    "momentum": st.floats(min_value=0, max_value=0.99),
    "epochs": st.integers(min_value=1, max_value=3),
    "batch_size": st.integers(min_value=1, max_value=64),
    "seed": st.integers(min_value=SEED_MIN, max_value=SEED_MAX),
    "hidden_sizes": st.lists(st.integers(min_value=1, max_value=16), min_size=1, max_size=3),
    "tolerances": st.lists(fractions, min_size=1, max_size=3, unique=True),
    "optimizer": st.sampled_from(["sgd", "adam", "adamw"]),
    "dataset": st.just("synthetic"),
    "train_size": st.integers(min_value=1, max_value=64),
    "test_size": st.one_of(st.none(), st.integers(min_value=1, max_value=32)),
    "basis": st.sampled_from(["previous", "next"]),
    "include_biases": st.booleans(),
    "keep_snapshots": st.booleans(),
}


@st.composite
def valid_sweeps(draw: st.DrawFn) -> dict[str, Any]:
    """A sweep the API must take: 1..3 grid fields of 1..2 distinct values (at most 4 members
    together), over a tiny synthetic base that may state fields the grid overrides."""
    fields = draw(st.lists(st.sampled_from(list(GRID_VALUES)), min_size=1, max_size=3, unique=True))
    grid: dict[str, list[Any]] = {}
    for field in fields:
        most = 2 if math.prod(len(v) for v in grid.values()) <= 2 else 1
        grid[field] = draw(
            st.lists(GRID_VALUES[field], min_size=1, max_size=most, unique_by=json.dumps)
        )
    base = dict(TINY_BASE)
    overridden = draw(st.sampled_from(fields))
    base[overridden] = draw(GRID_VALUES[overridden])
    return {"name": draw(st.one_of(st.none(), names)), "base": base, "grid": grid}


SWEEP_VIEWS = ("constancy", "metrics", "summary")


@settings(FUZZ, max_examples=40)
@given(body=valid_sweeps())
def test_fuzz_valid_sweeps_are_stored_whole_and_answer_every_view(lenient, db, body):
    """The success path of POST /sweeps: every member stored as the grid over the base says,
    and once they have epochs, every view of the sweep answers."""
    before = stored(db), sweeps_stored(db)
    response = lenient.post("/sweeps", content=json.dumps(body).encode(), headers=JSON)
    check("POST /sweeps (valid)", response)
    assert response.status_code == 201, (body, response.text)
    sweep = response.json()
    grid = body["grid"]
    combos = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    assert (stored(db), sweeps_stored(db)) == (before[0] + len(combos), before[1] + 1)
    assert list(sweep["grid"]) == list(grid) and sweep["base"]["dataset"] == "synthetic"
    for run, combo in zip(sweep["runs"], combos, strict=True):
        expected = RunSpec.model_validate(body["base"] | combo).model_dump(exclude={"name"})
        assert RunSpec.model_validate(run["spec"]).model_dump(exclude={"name"}) == expected
    train_all(db, random.Random(len(combos)))
    path = f"/sweeps/{sweep['id']}"
    read = lenient.get(path)
    check("GET /sweeps/{id} (valid)", read)
    assert read.status_code == 200 and read.json()["status"] == "succeeded"
    # The views at a tolerance need one every member has (else a 404 that says so).
    shared = set.intersection(*(set(r["spec"]["tolerances"]) for r in sweep["runs"]))
    groups = lenient.get(f"{path}/metrics", params={"by": "name"}).json()["groups"]
    difference = {"a": 0, "b": len(groups) - 1, "tol": min(shared or {0}), "by": "name"}
    for view, params in [*((v, {}) for v in SWEEP_VIEWS), ("difference", difference)]:
        answer = lenient.get(f"{path}/{view}", params=params)
        check(f"GET /sweeps/{{id}}/{view} (valid)", answer)
        if shared or view == "metrics":
            assert answer.status_code == 200, answer.text
        else:
            assert answer.status_code == 404 and "tol" in answer.json()["detail"]


@FUZZ
@given(
    operation=st.sampled_from(["PATCH run", "POST sweep cancel", "DELETE sweep"]),
    target=st.one_of(st.sampled_from(["1", "2", "3"]), query_values),
    body=st.one_of(st.builds(lambda p: {"priority": p}, json_values), json_values),
)
def test_fuzz_patch_runs_and_cancel_and_delete_sweeps(lenient, seeded, operation, target, body):
    segment = quote(target, safe="", errors="surrogatepass") or "1"
    if operation == "PATCH run":
        response = lenient.patch(f"/runs/{segment}", content=json.dumps(body).encode())
    elif operation == "POST sweep cancel":
        response = lenient.post(f"/sweeps/{segment}/cancel")
    else:
        response = lenient.delete(f"/sweeps/{segment}")
    check(f"{operation}", response)


def test_the_fuzzers_reached_every_operation(lenient):
    """Each operation of the OpenAPI document is covered by one of the fuzz tests above."""
    covered = {(m, p) for m, p in operations(lenient) if m in ("GET", "HEAD")}
    covered |= {("POST", "/runs"), ("POST", "/runs/{run_id}/cancel"), ("DELETE", "/runs/{run_id}")}
    covered |= {("POST", "/sweeps"), ("PATCH", "/runs/{run_id}")}
    covered |= {("POST", "/sweeps/{sweep_id}/cancel"), ("DELETE", "/sweeps/{sweep_id}")}
    assert set(operations(lenient)) <= covered
