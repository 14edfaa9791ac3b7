"""Shared fixtures: a temp data dir and a fresh database per test, the app on it, tiny specs.

The database is an SQLite file unless the test asks for both backends (or PostgreSQL only):

    pytestmark = pytest.mark.backends("sqlite", "postgresql")   # every test of the module, twice
    @pytest.mark.backends("postgresql")                        # this test on PostgreSQL only

Those tests run against the PostgreSQL server at ``DECAYLAB_TEST_POSTGRES_URL`` (default: the
local one, user postgres, trust auth), each in a database of its own that is dropped afterwards.
"""

import contextlib
import dataclasses
import io
import itertools
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import create_engine, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from server.api.app import create_app
from server.core import records
from server.core.errors import NotComputed
from server.core.experiment import SPECTRUM_TOLERANCES
from server.core.schemas import RunSpec, RunStatus
from server.core.settings import Settings
from server.processes import Processes, free_port, wait_for
from server.store import crud, jobs
from server.store.db import Database
from server.store.models import ExplainedCount, Run
from server.views import analysis, mechanism
from server.views.figures.draw import FigureOptions
from server.views.figures.render import Renderer

# matplotlib (figures) must not write into the home directory.
os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp(prefix="decaylab-mpl-"))

SpecFactory = Callable[..., dict[str, Any]]
ROOT = Path(__file__).resolve().parent.parent

POSTGRES_URL = os.environ.get(
    "DECAYLAB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = {
    "sqlite": "sqlite",
    # `-m "not postgres"` leaves these out.
    "postgresql": pytest.param("postgresql", marks=pytest.mark.postgres),
}


def pytest_configure(config: pytest.Config) -> None:
    # Before the test modules import torch, and inherited by every process a test starts: the
    # suite runs pytest, APIs and workers side by side (two test processes at once under `make
    # test`) on as few as two cores, where OpenMP's spinning threads would fight over them.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    config.addinivalue_line(
        "markers", "backends(*names): run the test once per database backend (db_url fixture)"
    )


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """For `make test`'s two processes (pytest-xdist, ``--dist loadgroup``): the tests of a
    module that share a module-scoped fixture (a `make run`, a browser, a cluster) run in one
    process, so that it starts once; every other test goes wherever a process is free. Slow
    tests first, so that the processes end together rather than one waiting on the other's
    last long test (without xdist, only the order changes)."""
    for item in items:
        fixtures = item._fixtureinfo.name2fixturedefs.values()  # type: ignore[attr-defined]
        if any(defs[-1].scope == "module" for defs in fixtures):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is not None and "db_url" in metafunc.fixturenames:
        metafunc.parametrize("db_url", [BACKENDS[name] for name in marker.args], indirect=True)


class PostgresServer:
    """Creates uniquely named databases on the test server and drops them again."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        # Unique per test session: other sessions may use the same server at the same time.
        self.prefix = f"decaylab_test_{os.getpid()}_{secrets.token_hex(3)}"
        self._numbers = itertools.count()
        self._admin = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with self._admin.connect():
            pass  # raises OperationalError when the server is not there

    def create(self) -> str:
        """An empty database; returns its URL."""
        name = f"{self.prefix}_{next(self._numbers)}"
        with self._admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        return self.url.set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        """Drop the database, ending whatever connections are left (e.g. a killed worker's)."""
        with self._admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')

    def close(self) -> None:
        self._admin.dispose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The PostgreSQL server; fails the test in CI when it is down, skips it elsewhere."""
    try:
        server = PostgresServer(POSTGRES_URL)
    except OperationalError as exc:
        reason = f"PostgreSQL is not reachable at {make_url(POSTGRES_URL)!r}: {exc}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(f"{reason} (start it, or deselect with -m 'not postgres')")
    yield server
    server.close()


def assert_causes_add_up(url: str) -> None:
    """Every epoch any worker (in-process or a real one) stored in the database at ``url``:
    per weight matrix, in_dead_unit (explained) <= no_gradient <= constant (unchanged), so that
    constant = no_gradient + rounded with rounded >= 0."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("explained_counts")}
            if "no_gradient" not in columns:  # a migration test left it at an older revision
                return
            wrong = conn.execute(
                select(ExplainedCount).where(
                    ExplainedCount.no_gradient.is_not(None),
                    ~(
                        (ExplainedCount.explained >= 0)
                        & (ExplainedCount.explained <= ExplainedCount.no_gradient)
                        & (ExplainedCount.no_gradient <= ExplainedCount.unchanged)
                    ),
                )
            ).all()
    finally:
        engine.dispose()
    assert wrong == [], f"causes that do not add up: {wrong}"


def has_tables(url: str) -> bool:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return inspect(conn).has_table("explained_counts")
    finally:
        engine.dispose()


# --- an S3-compatible server: moto's stand-alone server process, over HTTP -----------------


@dataclass
class S3Server:
    """moto's S3 on a free port with credentials checked: ``env`` holds a key allowed
    everything, ``read_only`` one that may list and read but not write."""

    endpoint: str
    env: dict[str, str]
    read_only: dict[str, str]

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name=self.env["AWS_DEFAULT_REGION"],
        )

    def create_bucket(self) -> str:
        """A new bucket of its own; returns its name."""
        name = f"decaylab-{secrets.token_hex(4)}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def _allow(iam: Any, user: str, statement: dict[str, Any]) -> dict[str, str]:
    """Create ``user`` with one inline policy statement; their key as AWS_* variables."""
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [statement]}
    iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps(policy))
    return {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto_server (``moto[server]``) as a real process on a free port, for the whole session."""
    import boto3
    import httpx

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    # Credentials are checked once the first six requests (the set-up below) have been served.
    env = os.environ | {"INITIAL_NO_AUTH_ACTION_COUNT": "6"}
    command = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=out)
    try:

        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited: {log.read_text()}")
            try:
                return httpx.get(f"{endpoint}/moto-api/", timeout=1).status_code > 0
            except httpx.TransportError:
                return False

        wait_for(answers, 60, "moto_server to answer")
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
            region_name="us-east-1",
        )
        common = {"AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "us-east-1"}
        everything = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
        reading = {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject"], "Resource": "*"}
        yield S3Server(
            endpoint,
            env=common | _allow(iam, "decaylab", everything),
            read_only=common | _allow(iam, "reader", reading),
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@dataclass
class S3Bucket:
    server: S3Server
    name: str

    @property
    def url(self) -> str:
        return f"s3://{self.name}/lab"

    def keys(self, prefix: str = "lab/") -> list[str]:
        return self.server.keys(self.name, prefix)


@pytest.fixture
def bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    """A fresh bucket on ``s3_server``, its credentials and endpoint in this process's AWS_*."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return S3Bucket(s3_server, s3_server.create_bucket())


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database without tables: SQLite unless parametrized (see ``backends``). After
    the test, the causes of every epoch stored in it must add up (assert_causes_add_up)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        path = tmp_path / "data" / "decaylab.db"
        url = f"sqlite:///{path}"
        yield url
        if path.exists() and has_tables(url):
            assert_causes_add_up(url)
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.create()
    yield url
    try:
        if has_tables(url):
            assert_causes_add_up(url)
    finally:
        server.drop(url)


@pytest.fixture
def settings(tmp_path, db_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        device="cpu",
        allow_download=False,
        lease_seconds=5.0,
        poll_seconds=0.05,
    )


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url)
    database.upgrade()
    yield database
    database.dispose()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def tiny_spec() -> SpecFactory:
    """A run spec that trains in well under a second per epoch on the synthetic data."""

    def make(**overrides: Any) -> dict[str, Any]:
        spec = {
            "dataset": "synthetic",
            "hidden_sizes": [32],
            "train_size": 512,
            "test_size": 256,
            "epochs": 3,
        }
        return spec | overrides

    return make


@dataclass(frozen=True)
class Played:
    run_id: int
    lease: jobs.Lease
    tensors: list[records.TensorInfo]
    initial_variances: list[float]
    epochs: list[records.EpochRecord]


def random_epoch(
    rng: random.Random, epoch: int, tensors: list[records.TensorInfo], n_tol: int
) -> records.EpochRecord:
    """An epoch record with made-up numbers for store and API tests."""
    return records.EpochRecord(
        epoch=epoch,
        train_loss=rng.uniform(0.1, 3),
        train_accuracy=rng.random(),
        test_loss=rng.uniform(0.1, 3),
        test_accuracy=rng.random(),
        epoch_seconds=rng.uniform(0.01, 1),
        # Counts grow with the tolerance, as real ones do.
        counts=[sorted(rng.randint(0, t.parameters) for _ in range(n_tol)) for t in tensors],
        variances=[rng.uniform(1e-4, 1e-2) for _ in tensors],
    )


def random_mechanism(
    rng: random.Random,
    record: records.EpochRecord,
    tensors: list[records.TensorInfo],
    hidden: list[int],
) -> records.EpochRecord:
    """``record`` with made-up dead units, explained counts, no-gradient counts and spectrum
    counts (at the ladder, growing with the tolerance; its tolerance 0 is each weight matrix's
    unchanged count), keeping explained <= no_gradient <= unchanged as the engine's do."""
    spectrum = [sorted(rng.randint(0, t.parameters) for _ in SPECTRUM_TOLERANCES) for t in tensors]
    unchanged = [spectrum[i][0] for i in range(len(hidden) + 1)]
    explained = [rng.randint(0, n) for n in unchanged]
    return dataclasses.replace(
        record,
        spectrum=spectrum,
        dead_units=[sorted(rng.sample(range(units), rng.randint(0, units))) for units in hidden],
        unchanged=unchanged,
        explained=explained,
        no_gradient=[rng.randint(e, n) for e, n in zip(explained, unchanged, strict=True)],
    )


LAYERS = (96, 32, 48, 10)


def train_all(db: Database, rng: random.Random, epochs: dict[int, int] | None = None) -> None:
    """A pretend worker: claims every queued run and stores random epochs for it (``epochs``
    per run id, default its spec's), leaving it succeeded."""
    tensors = [records.TensorInfo(i, f"layers.{i}.weight", n) for i, n in enumerate(LAYERS)]
    while True:
        with db.write() as session:
            claim = jobs.claim_run(session, "test:1", lease_seconds=60)
        if claim is None:
            return
        lease = claim.lease
        with db.write() as session:
            jobs.start_training(
                session,
                lease,
                start_epoch=0,
                device="cpu",
                tensors=tensors,
                initial_variances=[0.1] * len(tensors),
            )
        count = (epochs or {}).get(lease.run_id, claim.spec.epochs)
        for e in range(1, count + 1):
            record = random_epoch(rng, e, tensors, len(claim.spec.tolerances))
            with db.write() as session:
                jobs.record_epoch(session, lease, record, lease_seconds=60)
        with db.write() as session:
            jobs.finish_run(session, lease, RunStatus.succeeded)


@pytest.fixture
def play(db: Database) -> Callable[..., Played]:
    """Submit a run and let a pretend worker store ``epochs`` epochs of random results;
    ``mechanism``: dead units, explained counts and the spectrum too, as the engine measures
    them (its weight matrices are the first len(hidden_sizes) + 1 of ``parameters``), with the
    no-gradient counts unless ``causes`` is False (as an engine before them stored it)."""

    def run(
        spec: dict[str, Any],
        epochs: int,
        parameters: tuple[int, ...] = (96, 32, 48, 10),
        finish: RunStatus | None = RunStatus.succeeded,
        seed: int = 0,
        mechanism: bool = False,
        causes: bool = True,
    ) -> Played:
        rng = random.Random(seed)
        run_spec = RunSpec.model_validate(spec)
        # Named as the engine names them: every layer's weight, then (include_biases) biases.
        layers = len(parameters) // 2 if run_spec.include_biases else len(parameters)
        names = [f"layers.{i}.weight" for i in range(layers)]
        names += [f"layers.{i}.bias" for i in range(len(parameters) - layers)]
        tensors = [
            records.TensorInfo(i, name, n)
            for i, (name, n) in enumerate(zip(names, parameters, strict=True))
        ]
        with db.write() as session:
            run_id = crud.create_run(session, run_spec).id
        with db.write() as session:
            claim = jobs.claim_run(session, "test:1", lease_seconds=60)
        assert claim is not None and claim.lease.run_id == run_id
        initial = [rng.uniform(1e-4, 1e-2) for _ in tensors]
        with db.write() as session:
            jobs.start_training(
                session,
                claim.lease,
                start_epoch=0,
                device="cpu",
                tensors=tensors,
                initial_variances=initial,
                spectrum_tolerances=SPECTRUM_TOLERANCES if mechanism else None,
            )
        results = []
        for e in range(1, epochs + 1):
            results.append(random_epoch(rng, e, tensors, len(run_spec.tolerances)))
            if mechanism:
                results[-1] = random_mechanism(rng, results[-1], tensors, run_spec.hidden_sizes)
                if not causes:
                    results[-1] = dataclasses.replace(results[-1], no_gradient=[])
            with db.write() as session:
                jobs.record_epoch(session, claim.lease, results[-1], lease_seconds=60)
        if finish is not None:
            with db.write() as session:
                jobs.finish_run(session, claim.lease, finish)
        return Played(run_id, claim.lease, tensors, initial, results)

    return run


def submit(db: Database, spec: dict[str, Any] | RunSpec) -> int:
    """Store a queued run, as POST /runs does; returns its id."""
    with db.write() as session:
        return crud.create_run(session, RunSpec.model_validate(spec)).id


def submit_many(db: Database, spec: dict[str, Any] | RunSpec, count: int) -> list[int]:
    return [submit(db, spec) for _ in range(count)]


def run_of(db: Database, run_id: int) -> Run:
    with db.reader() as session:
        return crud.get_run(session, run_id)


@pytest.fixture
def lenient(settings: Settings) -> Iterator[TestClient]:
    """The app on the test's settings, answering 500s instead of raising them (what a client
    would see)."""
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def renderer() -> Iterator[Renderer]:
    r = Renderer()
    yield r
    r.close()


def pixels(png: bytes, options: FigureOptions) -> np.ndarray:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    assert image.size == (options.width, options.height)
    return np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)


def assert_drawn(png: bytes, options: FigureOptions, ink: float = 0.02) -> np.ndarray:
    """Not blank: many colours, and a share ``ink`` of pixels off the white background."""
    rgb = pixels(png, options)
    assert len(np.unique(rgb, axis=0)) >= 20
    assert (rgb != 255).any(axis=1).mean() > ink
    return rgb


def has_colour(rgb: np.ndarray, colour: tuple[float, ...], slack: int = 6) -> bool:
    target = np.round(np.asarray(colour[:3]) * 255)
    return bool((np.abs(rgb - target) <= slack).all(axis=1).sum() >= 20)


def json_links(client: TestClient, page: str) -> list[str]:
    """The page's "As JSON" links, each checked to answer JSON."""
    line = re.search(r'<p class="downloads">As JSON:(.*?)</p>', page, re.S)
    assert line is not None, page
    links = [href.replace("&amp;", "&") for href in re.findall(r'href="([^"]+)"', line[1])]
    for href in links:
        answer = client.get(href)
        assert answer.status_code == 200, href
        assert answer.headers["content-type"] == "application/json", href
    return links


def strip_run(view: dict[str, Any]) -> dict[str, Any]:
    """A results view without what differs between two runs of one spec (id, timings)."""
    return {k: v for k, v in view.items() if k not in ("run_id", "epoch_seconds")}


def stored_results(db: Database, run_id: int) -> dict[str, Any]:
    """Everything a run computed: metrics, constancy at every tolerance, weight variances, and
    (for runs trained by an engine that measures them) dead units and the spectrum."""
    with db.reader() as session:
        run = crud.get_run(session, run_id)
        constancy = analysis.constancy_all(session, run).model_dump()
        results = {
            "metrics": strip_run(analysis.metrics(session, run).model_dump()),
            "constancy": [strip_run(r) for r in constancy["results"]],
            "weights": strip_run(analysis.weight_stats(session, run).model_dump()),
        }
        try:
            results["units"] = strip_run(mechanism.units(session, run).model_dump())
            results["spectrum"] = strip_run(mechanism.spectrum(session, run).model_dump())
        except NotComputed:
            pass
        return results


@pytest.fixture
def processes(tmp_path, db_url: str) -> Iterator[Processes]:
    """Real API and worker processes on a temp data dir and ``db_url`` (server/processes.py)."""
    procs = Processes(tmp_path, lease_seconds="2", database_url=db_url)
    yield procs
    procs.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright, one per test module (tests/test_ui.py).

    Playwright cannot download its own browser here; CI installs `chromium` (.ci/run). Without
    it the test is skipped, except in CI, where it fails."""
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = shutil.which("chromium")
    if executable is None:
        reason = "no chromium on PATH (apt-get install chromium)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable)
        yield chromium
        chromium.close()


@dataclass
class Served:
    make: subprocess.Popen[bytes]
    url: str
    log: Path
    data_dir: Path

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as response:
            return json.load(response)

    def logs(self) -> str:
        return f"\n--- make run ---\n{self.log.read_text()[-5000:]}"

    def wait_for_run(self, run_id: int, done: Callable[[dict], bool], timeout: float) -> dict:
        def check() -> dict | None:
            assert self.make.poll() is None, self.logs()
            run = self.request("GET", f"/runs/{run_id}")
            return run if done(run) else None

        return wait_for(check, timeout, f"run {run_id}", self.logs())

    def stop(self, sig: int, group: bool) -> dict[str, int]:
        """Send sig (to make's process group, like a terminal, or to make alone); wait for the
        end, which must be clean and calm: one last line, no exit codes, no traceback. Returns
        each child's pid from the launcher's log."""
        if group:
            os.killpg(self.make.pid, sig)
        else:
            self.make.send_signal(sig)
        self.make.wait(timeout=90)
        text = self.log.read_text()
        pids = {
            name: int(pid) for name, pid in re.findall(r"decaylab: (\w+) started, pid (\d+)", text)
        }
        assert pids.keys() == {"api", "worker"}, text
        assert "exited with" not in text and "Traceback" not in text, text
        assert text.rstrip().endswith("decaylab: stopped"), text
        return pids


def make_run(tmp_path: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """`make run` in a session of its own, as a terminal starts it, on a temp data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DECAYLAB_")}
    env |= {
        "DECAYLAB_DATA_DIR": str(tmp_path / "data"),
        "DECAYLAB_PORT": str(port),
        "DECAYLAB_DEVICE": "cpu",
        "DECAYLAB_POLL_SECONDS": "0.2",
        "DECAYLAB_ALLOW_DOWNLOAD": "false",  # a cifar10 run fails at once, offline
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            ["make", "--no-print-directory", "--assume-old=.venv/.installed-run", "run"]
            + [f"PY={sys.executable}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextlib.contextmanager
def make_run_served(tmp_path: Path) -> Iterator[Served]:
    """`make run` on a free port and a temp data dir, until its worker has started; killed (with
    its children) at the end if still running."""
    port = free_port()
    log = tmp_path / "make-run.log"
    make = make_run(tmp_path, port, log)
    served = Served(make, f"http://127.0.0.1:{port}", log, tmp_path / "data")
    try:

        def worker_started() -> bool:
            assert make.poll() is None, served.logs()
            return "decaylab: worker started" in log.read_text()

        wait_for(worker_started, 90, "make run to start the worker", served.logs())
        yield served
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)  # the children follow (PR_SET_PDEATHSIG)
            make.wait()
