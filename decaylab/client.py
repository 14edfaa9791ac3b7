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
from typing import Any, Literal

import httpx
import pandas as pd
from httpx_sse import connect_sse
from tqdm.auto import tqdm

DEFAULT_URL = "http://127.0.0.1:8000"
# The first wait before opening a dropped event stream again; doubled on each further try.
RECONNECT_SECONDS = 0.5
FINISHED = frozenset({"succeeded", "failed", "cancelled"})

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


def _by(by: str | Iterable[str] | None) -> dict[str, Any]:
    """``by=``: spec fields comma-separated; an empty list makes one group of every run."""
    if by is None:
        return {}
    return {"by": by if isinstance(by, str) else ",".join(by)}


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

    def runs(self, status: str | None = None, limit: int = 100, offset: int = 0) -> list[Run]:
        """Runs, newest first (``status`` filters)."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status is not None:
            params["status"] = status
        page = self._request("GET", "/runs", params=params).json()
        return [Run.from_json(run) for run in page["runs"]]

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

    def events(self, run: RunLike) -> Iterator[Event]:
        """The run's events: its stored epochs first, then each new epoch and status change as
        it happens, and a last ``end`` event with the final status."""
        run_id = _run_id(run)
        try:
            with connect_sse(self._http, "GET", f"/runs/{run_id}/events", timeout=None) as source:
                _raise_for_status(source.response)
                for sse in source.iter_sse():
                    yield Event(sse.event, json.loads(sse.data))
        except httpx.TransportError as exc:
            raise DecaylabError(f"lost the event stream of run {run_id}: {exc}") from exc

    def wait(
        self, runs: RunLike | Sweep | Iterable[RunLike | Sweep], progress: bool = True
    ) -> list[Run]:
        """Block until every run has finished; returns them as they ended. A :class:`Sweep`
        stands for its member runs (waited for in grid order).

        ``progress`` shows one bar per run (epochs done of epochs), fed by the event stream. A
        dropped stream is opened again, ``retries`` times in a row at most (it restarts with
        the stored epochs, so nothing is missed)."""
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
                failures = 0
                while True:
                    try:
                        for event in self.events(run_id):
                            _show(bar, event)
                            failures = 0
                            if event.kind == "end":
                                return self.get(run_id)
                    except ApiError:
                        raise  # the run is gone, or the token is wrong: waiting cannot help
                    except DecaylabError:
                        if failures == self.retries:
                            raise
                    else:
                        # The stream ended before the run did: the API is shutting down.
                        if failures == self.retries:
                            raise DecaylabError(f"the event stream of run {run_id} kept ending")
                    failures += 1
                    time.sleep(RECONNECT_SECONDS * 2**failures)

        if len(ids) == 1:
            return [follow(0, ids[0])]
        with ThreadPoolExecutor(max_workers=len(ids), thread_name_prefix="decaylab-wait") as pool:
            return list(pool.map(follow, range(len(ids)), ids))

    # Analysis views, as tidy DataFrames (the API's CSV: one row per value)

    def _table(self, path: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        text = self._request("GET", path, params={**(params or {}), "format": "csv"}).text
        return pd.read_csv(io.StringIO(text), dtype=CSV_DTYPES)

    def metrics(self, run: RunLike) -> pd.DataFrame:
        """Columns run_id, epoch, metric (train_loss, train_accuracy, test_loss, test_accuracy,
        epoch_seconds), value."""
        return self._table(f"/runs/{_run_id(run)}/metrics")

    def constancy(self, run: RunLike, tol: float | None = None) -> pd.DataFrame:
        """% of weights constant from epoch e-1 to e at ``tol`` (default: every tolerance).

        Columns run_id, tolerance, basis, epoch, layer, name, parameters, constant, percent;
        ``layer`` is the layer's index, or ``all``/``last2`` for the means over the layers."""
        return self._table(f"/runs/{_run_id(run)}/constancy", _tol(tol))

    def weights(self, run: RunLike) -> pd.DataFrame:
        """Each layer's weight variance: columns run_id, epoch, layer, name, parameters,
        variance (epoch 0 is the initial weights)."""
        return self._table(f"/runs/{_run_id(run)}/weights")

    def compare(
        self, runs: Iterable[RunLike], tol: float | None = None, scope: Scope = "all"
    ) -> pd.DataFrame:
        """The runs side by side: columns tolerance, layer (the scope), run_id, name,
        weight_decay, epoch, percent; every tolerance the runs share unless ``tol``."""
        return self._table("/compare", _compare_params(runs, tol, scope))

    def units(self, run: RunLike) -> pd.DataFrame:
        """Why weights stay constant: a row per weight matrix and epoch.

        Columns run_id, epoch, layer, name, parameters, constant (weights exactly unchanged
        from epoch e-1 to e), explained (those in a dead unit's row or column), units and dead
        (the hidden layer after the matrix: its units and those that never fired in the epoch;
        empty for the output layer). Which units were dead is in ``GET /runs/{id}/units``."""
        return self._table(f"/runs/{_run_id(run)}/units")

    def spectrum(self, run: RunLike) -> pd.DataFrame:
        """The movement spectrum: % of each layer's weights constant at every tolerance of the
        ladder all runs share. The columns of :meth:`constancy` (run_id, tolerance, basis,
        epoch, layer, name, parameters, constant, percent), without the means."""
        return self._table(f"/runs/{_run_id(run)}/spectrum")

    def compare_spectrum(self, runs: Iterable[RunLike]) -> pd.DataFrame:
        """The runs' spectra, in their order: columns run_id, name (the run's), weight_decay,
        basis, tolerance, epoch, layer, parameters, constant, percent."""
        return self._table("/compare/spectrum", {"runs": _ids(runs)})

    def sweep_constancy(
        self,
        sweep: SweepLike,
        tol: float | None = None,
        scope: Scope = "all",
        by: str | Iterable[str] | None = None,
    ) -> pd.DataFrame:
        """Per group of the sweep's runs and epoch: the mean % of weights constant and its 95%
        interval. Columns sweep_id, tolerance, layer (the scope), a column per ``by`` field
        (default: the grid's fields but seed), n, epoch, mean, ci_low, ci_high (empty for n=1)."""
        params = {"scope": scope} | _tol(tol) | _by(by)
        return self._table(f"/sweeps/{_sweep_id(sweep)}/constancy", params)

    def sweep_metrics(
        self, sweep: SweepLike, by: str | Iterable[str] | None = None
    ) -> pd.DataFrame:
        """Per group and epoch, mean train/test loss and accuracy with their intervals: columns
        sweep_id, metric, a column per ``by`` field, n, epoch, mean, ci_low, ci_high."""
        return self._table(f"/sweeps/{_sweep_id(sweep)}/metrics", _by(by))

    def sweep_summary(
        self,
        sweep: SweepLike,
        tol: float | None = None,
        scope: Scope | Literal["layers", "means"] = "means",
        epoch: int | None = None,
        by: str | Iterable[str] | None = None,
    ) -> pd.DataFrame:
        """Dose-response: every group at one epoch (default: the last every group has), per
        tolerance and line of ``scope``: columns sweep_id, epoch, tolerance, layer, a column per
        ``by`` field, n, mean, sd, ci_low, ci_high."""
        params = {"scope": scope} | _tol(tol) | _by(by)
        if epoch is not None:
            params["epoch"] = epoch
        return self._table(f"/sweeps/{_sweep_id(sweep)}/summary", params)

    # Figures (PNG)

    def _figure(self, path: str, params: Mapping[str, Any]) -> Figure:
        query = {k: v for k, v in params.items() if v is not None} | {"format": "png"}
        return Figure(self._request("GET", path, params=query).content)

    def metrics_png(
        self, run: RunLike, metric: Literal["loss", "accuracy"] = "loss", **size: int
    ) -> Figure:
        """Train vs test loss or accuracy; ``size``: width, height (pixels), dpi."""
        return self._figure(f"/runs/{_run_id(run)}/metrics", {"metric": metric} | size)

    def constancy_png(
        self,
        run: RunLike,
        tol: float | None = None,
        scope: Literal["layers", "all", "last2"] = "layers",
        **size: int,
    ) -> Figure:
        """One panel per tolerance (one with ``tol``): a line per layer, or the mean."""
        params = {"tol": tol, "scope": scope} | size
        return self._figure(f"/runs/{_run_id(run)}/constancy", params)

    def weights_png(self, run: RunLike, **size: int) -> Figure:
        return self._figure(f"/runs/{_run_id(run)}/weights", size)

    def compare_png(
        self,
        runs: Iterable[RunLike],
        tol: float | None = None,
        scope: Scope = "all",
        **size: int,
    ) -> Figure:
        """One line per run, one panel per shared tolerance (one with ``tol``)."""
        return self._figure("/compare", _compare_params(runs, tol, scope) | size)

    def units_png(self, run: RunLike, **size: int) -> Figure:
        """Dead units per hidden layer over the epochs; per weight matrix, its exactly constant
        weights against those dead units explain."""
        return self._figure(f"/runs/{_run_id(run)}/units", size)

    def spectrum_png(self, runs: RunLike | Iterable[RunLike], **size: int) -> Figure:
        """A run's movement spectrum (a heatmap per layer, epoch × tolerance), or several runs'
        side by side (a row per run, one colour scale) when ``runs`` is a list."""
        if isinstance(runs, RunLike):
            return self._figure(f"/runs/{_run_id(runs)}/spectrum", size)
        return self._figure("/compare/spectrum", {"runs": _ids(runs)} | size)

    def sweep_png(
        self,
        sweep: SweepLike,
        view: Literal["constancy", "summary", "metrics", "difference"] = "constancy",
        by: str | Iterable[str] | None = None,
        **params: Any,
    ) -> Figure:
        """A sweep view's figure; ``params`` are the view's query (tol, scope, epoch, metric,
        a and b, method; width, height, dpi), e.g. ``sweep_png(1, "summary", scope="layers")``."""
        return self._figure(f"/sweeps/{_sweep_id(sweep)}/{view}", params | _by(by))


def _tol(tol: float | None) -> dict[str, Any]:
    return {} if tol is None else {"tol": tol}


def _ids(runs: Iterable[RunLike]) -> str:
    return ",".join(str(_run_id(r)) for r in runs)


def _compare_params(runs: Iterable[RunLike], tol: float | None, scope: Scope) -> dict[str, Any]:
    return {"runs": _ids(runs), "scope": scope} | _tol(tol)


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


def _show(bar: Any, event: Event) -> None:
    """Move a run's progress bar to what ``event`` says."""
    data = event.data
    if event.kind == "epoch":
        bar.n = data["epoch"]
        bar.set_postfix(
            loss=f"{data['train_loss']:.3g}",
            acc=f"{data['test_accuracy']:.1%}",
            const=f"{data['constant_mean']:.2f}%",
            refresh=False,
        )
    else:  # status and end
        bar.total = data["epochs"]
        bar.n = data["epochs_done"]
        bar.set_description(f"run {data['run_id']} {data['status']}", refresh=False)
    bar.refresh()
