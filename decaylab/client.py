"""A Python client for the decaylab API: runs, their analysis as pandas DataFrames, figures.

It speaks HTTP only (no import of ``server`` or ``worker``), so it installs without torch::

    import decaylab

    c = decaylab.Client()  # DECAYLAB_URL (default http://127.0.0.1:8000), DECAYLAB_API_TOKEN
    runs = [c.submit(dataset="synthetic", epochs=5, weight_decay=wd) for wd in (0, 0.001)]
    c.wait(runs)
    c.compare(runs, tol=0)  # a DataFrame: tolerance, layer, run_id, name, weight_decay, ...
"""

import io
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import pandas as pd
from httpx_sse import connect_sse
from tqdm.auto import tqdm

from decaylab.views import FINISHED, VIEWS, View

DEFAULT_URL = "http://127.0.0.1:8000"
# The first wait before opening a dropped event stream again; doubled on each further try, up
# to the most; given up on when no stream has opened for RECONNECT_FOR_SECONDS (long enough for
# the API to restart).
RECONNECT_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 5.0
RECONNECT_FOR_SECONDS = 120.0

# Column types of the CSV views. ``layer`` is a layer index or a mean ("all", "last2"), so it
# is text throughout; counts are empty on the mean rows (and a hidden layer's on the output
# layer's rows of the units view), hence nullable integers.
CSV_DTYPES = {
    "layer": "string",
    "name": "string",
    "parameters": "Int64",
    "constant": "Int64",
    "explained": "Int64",
    "units": "Int64",
    "dead": "Int64",
}

Scope = Literal["all", "last2"] | int
# Client.runs()'s columns before the spec's (when no run matches, the table still has them).
RUN_COLUMNS = [
    "id",
    "name",
    "status",
    "epochs_done",
    "created_at",
    "started_at",
    "finished_at",
    "error",
    "sweep_id",
]


class DecaylabError(Exception):
    """Anything the client could not do; ``str()`` says what."""


class ApiError(DecaylabError):
    """The API refused a request: ``status_code`` and the API's ``detail``."""

    def __init__(self, status_code: int, detail: Any) -> None:
        self.status_code = status_code
        self.detail = detail
        super().__init__(f"HTTP {status_code}: {format_detail(detail)}")


class NotFound(ApiError):
    """404: no such run, or a tolerance or layer it did not compute."""


class Conflict(ApiError):
    """409: not possible in the run's status (e.g. deleting a running run)."""


class Unauthorized(ApiError):
    """401: missing or wrong token (DECAYLAB_API_TOKEN)."""


class InvalidRequest(ApiError):
    """400, 413 or 422: the spec or a parameter is invalid; ``detail`` names the field."""


_ERRORS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: InvalidRequest,
    422: InvalidRequest,
}


def format_error(error: Any) -> str:
    """One error of a 422 (``body.grid.seed.1 = 0: repeats seed[0]…``): where, as the API's
    0-based ``loc``, the value when it is one, and what is wrong."""
    if not isinstance(error, Mapping):
        return str(error)
    loc = ".".join(str(part) for part in error.get("loc", ()))
    message = str(error.get("msg", error)).removeprefix("Value error, ")
    value = error.get("input")
    if isinstance(value, str | int | float | bool):
        loc += f" = {json.dumps(value)}"
    return f"{loc}: {message}" if loc else message


def format_detail(detail: Any) -> str:
    """The API's ``detail`` as one line; a 422's list names each field (``body.momentum: …``)."""
    if isinstance(detail, list):
        return "; ".join(format_error(error) for error in detail)
    return str(detail)


def _datetime(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@dataclass(frozen=True)
class Run:
    """A run as ``GET /runs/{id}`` returns it; ``json`` holds that answer unchanged."""

    id: int
    name: str | None
    status: str
    spec: dict[str, Any]
    epochs_done: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    device: str | None
    worker: str | None
    attempts: int
    cancel_requested: bool
    note: str | None
    json: dict[str, Any] = field(repr=False, compare=False)

    def __repr__(self) -> str:
        """One line: what tells runs apart in a list (the whole answer is in ``json``)."""
        spec = self.spec
        return (
            f"<Run {self.id} {self.name or '(no name)'!r} {self.status} "
            f"{self.epochs_done}/{spec.get('epochs')} epochs, {spec.get('dataset')}, "
            f"weight_decay={spec.get('weight_decay')!r}>"
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Run":
        return cls(
            id=data["id"],
            name=data["name"],
            status=data["status"],
            spec=data["spec"],
            epochs_done=data["epochs_done"],
            created_at=datetime.fromisoformat(data["created_at"]),
            started_at=_datetime(data["started_at"]),
            finished_at=_datetime(data["finished_at"]),
            error=data["error"],
            device=data["device"],
            worker=data["worker"],
            attempts=data["attempts"],
            cancel_requested=data["cancel_requested"],
            note=data.get("note"),
            json=data,
        )

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


# Wherever a run is asked for, its id or the Run will do.
RunLike = int | Run


@dataclass(frozen=True)
class Sweep:
    """A sweep as ``GET /sweeps/{id}`` returns it: a grid of runs (``runs``, in grid order;
    empty in a listing, which leaves them out); ``json`` holds that answer unchanged."""

    id: int
    name: str | None
    status: str
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    priority: int
    created_at: datetime
    # runs, by_status (a count per status), epochs_done, epochs_total
    progress: dict[str, Any]
    runs: list[Run]
    json: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Sweep":
        return cls(
            id=data["id"],
            name=data["name"],
            status=data["status"],
            base=data["base"],
            grid=data["grid"],
            priority=data["priority"],
            created_at=datetime.fromisoformat(data["created_at"]),
            progress=data["progress"],
            runs=[Run.from_json(run) for run in data.get("runs", [])],
            json=data,
        )

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def __repr__(self) -> str:
        grid = " × ".join(f"{name}={values}" for name, values in self.grid.items())
        return (
            f"<Sweep {self.id} {self.name or '(no name)'!r} {self.status} "
            f"{self.progress.get('runs')} runs: {grid}>"
        )


# Wherever a sweep is asked for, its id or the Sweep will do.
SweepLike = int | Sweep


@dataclass(frozen=True)
class Event:
    """One event of ``GET /runs/{id}/events``: ``kind`` is status, epoch or end."""

    kind: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Figure:
    """A PNG from the API; Jupyter shows it inline (``_repr_png_``)."""

    png: bytes

    def _repr_png_(self) -> bytes:
        return self.png

    def save(self, path: str | os.PathLike[str]) -> None:
        with open(path, "wb") as out:
            out.write(self.png)


def _run_id(run: RunLike) -> int:
    return run.id if isinstance(run, Run) else int(run)


def _sweep_id(sweep: SweepLike) -> int:
    return sweep.id if isinstance(sweep, Sweep) else int(sweep)


class Client:
    """The decaylab API at ``url`` with bearer ``token``.

    ``url`` defaults to ``$DECAYLAB_URL`` (else http://127.0.0.1:8000), ``token`` to
    ``$DECAYLAB_API_TOKEN``. Failed connections are retried ``retries`` times with backoff; a
    refused request raises an :class:`ApiError` subclass carrying the API's ``detail``."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 3,
    ) -> None:
        self.url = (url or os.environ.get("DECAYLAB_URL") or DEFAULT_URL).rstrip("/")
        token = token if token is not None else os.environ.get("DECAYLAB_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # httpx retries failed connection attempts (refused, timed out) with exponential backoff;
        # never a request the server received, so a POST is not submitted twice.
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=timeout,
            transport=httpx.HTTPTransport(retries=retries),
        )
        self.retries = retries

    def __repr__(self) -> str:
        token = "with a token" if "Authorization" in self._http.headers else "without a token"
        return f"<decaylab.Client {self.url} {token}>"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise DecaylabError(f"cannot reach the decaylab API at {self.url}: {exc}") from exc
        _raise_for_status(response)
        return response

    # Runs

    def submit(self, spec: Mapping[str, Any] | None = None, /, **fields: Any) -> Run:
        """Submit a training job: ``spec`` (a dict of run-spec fields) updated by ``fields``."""
        body = dict(spec or {}) | fields
        return Run.from_json(self._request("POST", "/runs", json=body).json())

    def list_runs(self, status: str | None = None, limit: int = 100, offset: int = 0) -> list[Run]:
        """Runs as :class:`Run` objects, newest first (``status`` filters); :meth:`runs` has
        them as a table."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status is not None:
            params["status"] = status
        page = self._request("GET", "/runs", params=params).json()
        return [Run.from_json(run) for run in page["runs"]]

    def runs(
        self,
        status: str | None = None,
        name: str | None = None,
        sweep: SweepLike | None = None,
        limit: int | None = None,
        **spec: Any,
    ) -> pd.DataFrame:
        """Every run (newest first; at most ``limit``) as a DataFrame: one row per run, columns
        id, name, status, epochs_done, created_at, started_at, finished_at, error, sweep_id,
        then every spec field (a list field such as hidden_sizes as a list).

        Filters, all of them at once: ``status``; ``name`` (the run's name contains it);
        ``sweep`` (its member runs); a spec field's value, e.g. ``weight_decay=0.001`` or
        ``dataset="synthetic"``."""
        if sweep is not None:
            found = [r for r in self.sweep(sweep).runs if status is None or r.status == status]
        else:
            found, page = [], 1000
            while limit is None or len(found) < limit:
                batch = self.list_runs(status=status, limit=page, offset=len(found))
                found += batch
                if len(batch) < page:
                    break
        unknown = sorted(set(spec) - set(found[0].spec)) if found else []
        if unknown:
            raise DecaylabError(f"not a run spec field: {', '.join(unknown)}")
        rows = [
            {column: run.json.get(column) for column in RUN_COLUMNS}
            | {key: value for key, value in run.spec.items() if key != "name"}
            for run in found
            if (name is None or name in (run.name or ""))
            and all(run.spec.get(key) == value for key, value in spec.items())
        ]
        table = pd.DataFrame(rows, columns=list(rows[0]) if rows else RUN_COLUMNS)
        for column in ("created_at", "started_at", "finished_at"):
            table[column] = pd.to_datetime(table[column], format="ISO8601", utc=True)
        return table if limit is None else table.head(limit)

    def get(self, run: RunLike) -> Run:
        return Run.from_json(self._request("GET", f"/runs/{_run_id(run)}").json())

    def cancel(self, run: RunLike) -> Run:
        """Cancel: a queued run at once, a running one at its next batch."""
        return Run.from_json(self._request("POST", f"/runs/{_run_id(run)}/cancel").json())

    def delete(self, run: RunLike) -> None:
        """Delete a run that is not running, with its results and files."""
        self._request("DELETE", f"/runs/{_run_id(run)}")

    # Sweeps

    def submit_sweep(
        self,
        base: Mapping[str, Any],
        grid: Mapping[str, Iterable[Any]],
        name: str | None = None,
        priority: int = 0,
    ) -> Sweep:
        """Submit ``base`` (run-spec fields) over the cartesian product of ``grid`` (a spec field
        → its values, the last varying fastest) as one sweep; all or nothing (a refused member
        raises :class:`InvalidRequest` naming it, e.g. ``body.grid.weight_decay.2``)."""
        body = {
            "name": name,
            "base": dict(base),
            "grid": {field: list(values) for field, values in grid.items()},
            "priority": priority,
        }
        return Sweep.from_json(self._request("POST", "/sweeps", json=body).json())

    def sweeps(self, limit: int = 100, offset: int = 0) -> list[Sweep]:
        """Sweeps, newest first, without their runs (``sweep(id)`` has them)."""
        page = self._request("GET", "/sweeps", params={"limit": limit, "offset": offset}).json()
        return [Sweep.from_json(sweep) for sweep in page["sweeps"]]

    def sweep(self, sweep: SweepLike) -> Sweep:
        return Sweep.from_json(self._request("GET", f"/sweeps/{_sweep_id(sweep)}").json())

    def cancel_sweep(self, sweep: SweepLike) -> Sweep:
        """Cancel the sweep's unfinished runs: queued ones at once, running ones at their next
        batch (:class:`Conflict` when every run has finished)."""
        path = f"/sweeps/{_sweep_id(sweep)}/cancel"
        return Sweep.from_json(self._request("POST", path).json())

    def delete_sweep(self, sweep: SweepLike) -> None:
        """Delete a sweep and its runs with their results and files (not while one runs)."""
        self._request("DELETE", f"/sweeps/{_sweep_id(sweep)}")

    # Live progress

    def events(self, run: RunLike, after: int = 0) -> Iterator[Event]:
        """The run's events: its stored epochs after epoch ``after`` first, then each new epoch
        and status change as it happens, and a last ``end`` event with the final status. The
        stream ends without ``end`` when the API stops (:meth:`wait` reconnects)."""
        run_id = _run_id(run)
        # The epoch last seen, as an event stream's reconnecting client says it.
        headers = {"Last-Event-ID": str(after)} if after else {}
        path = f"/runs/{run_id}/events"
        try:
            with connect_sse(self._http, "GET", path, headers=headers, timeout=None) as source:
                _raise_for_status(source.response)
                for sse in source.iter_sse():
                    if sse.data:  # not the server's keep-alive comment
                        yield Event(sse.event, json.loads(sse.data))
        except httpx.TransportError as exc:
            raise DecaylabError(f"lost the event stream of run {run_id}: {exc}") from exc

    def wait(
        self, runs: RunLike | Sweep | Iterable[RunLike | Sweep], progress: bool = True
    ) -> list[Run]:
        """Block until every run has finished; returns them as they ended. A :class:`Sweep`
        stands for its member runs (waited for in grid order).

        ``progress`` shows one bar per run (epochs done of epochs), fed by the event stream;
        its rate counts the epochs trained while it watched, not those stored before nor the
        time in the queue. A dropped stream (the API restarting, say) is opened again with
        back-off, after the last epoch seen, for up to ``RECONNECT_FOR_SECONDS``."""
        items = [runs] if isinstance(runs, RunLike | Sweep) else list(runs)
        ids = []
        for item in items:
            if isinstance(item, Sweep):
                members = item.runs or self.sweep(item).runs
                ids += [run.id for run in members]
            else:
                ids.append(_run_id(item))

        def follow(position: int, run_id: int) -> Run:
            bar = tqdm(
                desc=f"run {run_id}",
                unit="epoch",
                position=position,
                disable=not progress,
                leave=True,
                dynamic_ncols=True,
            )
            with bar:
                shown = _Progress(bar)
                failures, last_epoch = 0, 0
                connected = time.monotonic()
                while True:
                    try:
                        for event in self.events(run_id, after=last_epoch):
                            shown.show(event)
                            failures, connected = 0, time.monotonic()
                            if event.kind == "epoch":
                                last_epoch = event.data["epoch"]
                            elif event.kind == "end":
                                return self.get(run_id)
                    except ApiError:
                        raise  # the run is gone, or the token is wrong: waiting cannot help
                    except DecaylabError as error:
                        lost: DecaylabError = error
                    else:
                        # The stream ended before the run did: the API is shutting down.
                        lost = DecaylabError(f"the event stream of run {run_id} kept ending")
                    if time.monotonic() - connected > RECONNECT_FOR_SECONDS:
                        raise lost
                    time.sleep(min(RECONNECT_SECONDS * 2**failures, RECONNECT_MAX_SECONDS))
                    failures += 1

        if len(ids) == 1:
            return [follow(0, ids[0])]
        with ThreadPoolExecutor(max_workers=len(ids), thread_name_prefix="decaylab-wait") as pool:
            return list(pool.map(follow, range(len(ids)), ids))

    # Analysis views: every view of the API's registry (decaylab/views.py) as a tidy DataFrame
    # (its CSV: one row per value) and as a figure; each also has a method of its own name
    # (``constancy``, ``constancy_png``, ...), attached below the class.

    def view(self, name: str, subject: Any, /, **params: Any) -> pd.DataFrame:
        """The view ``name`` of a run, runs or a sweep (as the view's subject is) as a tidy
        DataFrame; ``params`` are the view's query (``decaylab.views.VIEWS[name].parameters``):
        None leaves one out, a list is sent comma-separated."""
        path, query = _view_query(name, subject, params)
        text = self._request("GET", path, params=query | {"format": "csv"}).text
        return pd.read_csv(io.StringIO(text), dtype=CSV_DTYPES)

    def figure(self, name: str, subject: Any, /, **params: Any) -> Figure:
        """The view ``name``'s figure; ``params`` as for :meth:`view`, and the PNG's width and
        height (pixels) and dpi."""
        path, query = _view_query(name, subject, params, FIGURE_SIZE)
        return Figure(self._request("GET", path, params=query | {"format": "png"}).content)

    # The write-up's claims re-checked

    def reproduction(self, sweep: SweepLike) -> dict[str, Any]:
        """The write-up's claims re-checked on a finished sweep of weight decay 0 and 0.001 ×
        seeds (``GET /sweeps/{id}/reproduction``): per claim its published value, the mean over
        the seeds, the 95% interval and a verdict (holds, fails, inconclusive) by the stated
        rule. :class:`Conflict` says why when the sweep has another shape or is not finished."""
        return self._request("GET", f"/sweeps/{_sweep_id(sweep)}/reproduction").json()

    def write_reproduction(self, sweep: SweepLike, out: str | os.PathLike[str]) -> Path:
        """Write the reproduction as ``out``/report.md (the API's Markdown of the same numbers)
        with its figures as PNG files beside it; returns the report's path."""
        path = f"/sweeps/{_sweep_id(sweep)}/reproduction"
        report = self._request("GET", path).json()
        markdown = self._request("GET", path, params={"format": "md"}).text
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        for figure in report["figures"]:
            (folder / figure["file"]).write_bytes(self._request("GET", figure["url"]).content)
        (folder / "report.md").write_text(markdown)
        return folder / "report.md"


# The figure's size parameters, which every view's PNG takes besides its own.
FIGURE_SIZE = ("width", "height", "dpi")


def _view_query(
    name: str, subject: Any, params: Mapping[str, Any], extra: tuple[str, ...] = ()
) -> tuple[str, dict[str, Any]]:
    """A view's path and query for ``subject`` (a run, runs or a sweep) and ``params``."""
    try:
        view = VIEWS[name]
    except KeyError:
        raise ValueError(f"no view {name!r}; the views: {', '.join(VIEWS)}") from None
    unknown = set(params) - set(view.parameters) - set(extra)
    if unknown:
        takes = ", ".join(view.parameters + extra) or "nothing"
        raise TypeError(f"{name} takes {takes}; not {', '.join(sorted(unknown))}")
    query = {
        k: v if isinstance(v, str | int | float) else ",".join(map(str, v))
        for k, v in params.items()
        if v is not None
    }
    if view.subject == "runs":
        return view.path, query | {"runs": _ids(subject)}
    if view.subject == "run":
        return view.path.format(run_id=_run_id(subject)), query
    return view.path.format(sweep_id=_sweep_id(subject)), query


def _view_methods(name: str, view: View) -> None:
    """``Client.<name>`` (a DataFrame) and ``Client.<name>_png`` (a Figure) for a view."""
    takes = ", ".join(view.parameters) or "no parameters"

    def table(self: Client, subject: Any, /, **params: Any) -> pd.DataFrame:
        return self.view(name, subject, **params)

    def png(self: Client, subject: Any, /, **params: Any) -> Figure:
        return self.figure(name, subject, **params)

    what = {"run": "a run", "runs": "runs (in their order)", "sweep": "a sweep"}[view.subject]
    for method, suffix, returns in ((table, "", "a tidy DataFrame"), (png, "_png", "a Figure")):
        method.__name__ = method.__qualname__ = f"{name}{suffix}"
        method.__doc__ = (
            f"{view.summary}, of {what}, as {returns} (GET {view.path}). Takes {takes}"
            + (", and width, height, dpi." if suffix else ".")
        )
        setattr(Client, method.__name__, method)


for _name, _view in VIEWS.items():
    _view_methods(_name, _view)


def _ids(runs: Iterable[RunLike]) -> str:
    return ",".join(str(_run_id(r)) for r in runs)


def _raise_for_status(response: httpx.Response) -> None:
    if response.is_success:
        return
    response.read()  # a streamed answer (the event stream) has not been read yet
    try:
        detail = response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        detail = response.text or response.reason_phrase
    if response.status_code >= 500:
        raise DecaylabError(f"the decaylab API failed (HTTP {response.status_code}): {detail}")
    raise _ERRORS.get(response.status_code, ApiError)(response.status_code, detail)


class _Progress:
    """A run's progress bar, moved by its events. tqdm's rate is (n − initial) / time since
    start: both start again when the run is first seen, and when it starts running, so that
    neither the stored epochs a stream replays nor the time in the queue count."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.status: str | None = None

    def show(self, event: Event) -> None:
        bar, data = self.bar, event.data
        if event.kind == "epoch":
            bar.n = data["epoch"]
            bar.set_postfix(
                loss=f"{data['train_loss']:.3g}",
                acc=f"{data['test_accuracy']:.1%}",
                const=f"{data['constant_mean']:.2f}%",
                refresh=False,
            )
        else:  # status and end
            status = data["status"]
            if self.status is None or (status == "running" and self.status != "running"):
                bar.reset(total=data["epochs"])
                bar.initial = data["epochs_done"]
            self.status = status
            bar.total = data["epochs"]
            bar.n = data["epochs_done"]
            bar.set_description(f"run {data['run_id']} {status}", refresh=False)
        bar.refresh()
