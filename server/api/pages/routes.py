"""The browser UI's pages: runs list, run page, comparison, new-run form, login.

Server-rendered with Jinja2; numbers and figures come from server.views.analysis and the PNG
views, as the JSON API's do. Pages live under /ui/ (``/`` sends a browser there), outside the
OpenAPI document. Writes are POSTs (no state changes by GET), refused cross-origin by the
middleware."""

import dataclasses
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session

from server.api.deps import SessionDep, SettingsDep, WriteSessionDep
from server.api.middleware import TOKEN_COOKIE, token_matches
from server.api.pages import forms, queries
from server.api.routers import runs as runs_api
from server.api.routers.params import MAX_ID, RunId, RunIds
from server.core.errors import DomainError, NotComputed
from server.core.schemas import (
    ConstancyAllOut,
    MetricsOut,
    RunOut,
    RunSpec,
    RunStatus,
    UnitsOut,
)
from server.core.scope import describe
from server.core.settings import Settings
from server.store import crud
from server.store.lifecycle import FINISHED
from server.store.models import Run
from server.views import analysis, mechanism, posthoc, registry
from server.views.figures.answer import ResponseFormat, _accept_quality
from server.views.figures.draw import label_of

UI = "/ui"
LOGIN_PATH = f"{UI}/login"
STATIC_PATH = f"{UI}/static"
PER_PAGE = (25, 50, 100, 200)
# How long the login cookie lasts: a week of not being asked for the token again.
COOKIE_SECONDS = 7 * 24 * 3600
# The formats the views answer in: a download link each, beside every figure.
DOWNLOADS = get_args(ResponseFormat)
# Statuses a run may still leave: its pages follow it live.
LIVE = tuple(s for s in RunStatus if s not in FINISHED)


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    minutes, seconds = divmod(round(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s"


def _value(value: Any) -> str:
    """A spec value as people read it: lists comma-separated, floats shortest, None as —."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _percent(value: float) -> str:
    """Three decimals, or three significant digits below 0.1 % (weight decay's tiny shares),
    never in e-notation."""
    if value == 0 or abs(value) >= 0.1:
        return f"{value:.3f}"
    return f"{value:.{2 - math.floor(math.log10(abs(value)))}f}"


def _url(path: str, **params: Any) -> str:
    """``path`` with the parameters that are not None; lists repeat the name."""
    query = urlencode([(k, v) for k, v in params.items() if v is not None], doseq=True)
    return f"{path}?{query}" if query else path


def _templates() -> Jinja2Templates:
    # Autoescaping: names, notes and errors are user text.
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_when, seconds=_seconds, value=_value, percent=_percent)
    env.globals.update(url=_url, static=STATIC_PATH, downloads=DOWNLOADS, label=label_of)
    return Jinja2Templates(env=env)


templates = _templates()


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    # The middleware let the request in: with a token set, a browser's cookie holds it.
    context |= {"logged_in": settings.api_token is not None and TOKEN_COOKIE in request.cookies}
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def _error_page(request: Request, status_code: int, message: str) -> HTMLResponse:
    return page(request, "error.html", status_code, code=status_code, message=message)


class PageRoute(APIRoute):
    """Errors as HTML pages (the app's handlers answer JSON, for the API)."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except DomainError as exc:
                return _error_page(request, exc.status_code, str(exc))
            except RequestValidationError as exc:
                wrong = "; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in exc.errors())
                return _error_page(request, 422, wrong)

        return page_handler


router = APIRouter(include_in_schema=False, route_class=PageRoute)


def _local(target: str | None, default: str = f"{UI}/runs") -> str:
    """Where to go back to: only a path on this server (no open redirect)."""
    ok = target and target.startswith("/") and not target.startswith("//") and "\\" not in target
    return target if ok else default


# --- index and login ---------------------------------------------------------------------


@router.get("/")
def index(request: Request) -> Response:
    """Browsers go to the runs list; other clients get a JSON index of links."""
    quality = _accept_quality(request.headers.get("accept", ""))
    headers = {"Vary": "Accept"}
    if quality.get("text/html", 0.0) > quality.get("application/json", 0.0):
        return RedirectResponse(f"{UI}/runs", status_code=303, headers=headers)
    links = {"ui": f"{UI}/runs", "runs": "/runs", "docs": "/docs", "openapi": "/openapi.json"}
    return JSONResponse({"name": "decaylab", "links": links}, headers=headers)


@router.get(LOGIN_PATH)
def login_form(request: Request, settings: SettingsDep, next: str | None = None) -> Response:
    if settings.api_token is None:
        return RedirectResponse(_local(next), status_code=303)
    return page(request, "login.html", next=_local(next), error=None)


@router.post(LOGIN_PATH)
def login(
    request: Request,
    settings: SettingsDep,
    token: Annotated[str, Form()],
    next: Annotated[str | None, Form()] = None,
) -> Response:
    """Checks the token once and keeps it in an HttpOnly cookie the middleware accepts."""
    if settings.api_token is None:
        return RedirectResponse(_local(next), status_code=303)
    if not token_matches(token, settings.api_token.encode()):
        return page(request, "login.html", 401, next=_local(next), error="That is not the token.")
    response = RedirectResponse(_local(next), status_code=303)
    response.set_cookie(
        TOKEN_COOKIE,
        token.strip(),
        max_age=COOKIE_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post(f"{UI}/logout")
def logout() -> Response:
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    response.delete_cookie(TOKEN_COOKIE, httponly=True, samesite="strict")
    return response


# --- runs list ---------------------------------------------------------------------------


@router.get(f"{UI}/runs")
def runs_list(
    request: Request,
    session: SessionDep,
    status: RunStatus | None = None,
    name: Annotated[str, Query(max_length=200)] = "",
    sort: queries.SortKey = "id",
    order: Literal["asc", "desc"] = "desc",
    page_number: Annotated[int, Query(alias="page", ge=1, le=MAX_ID)] = 1,
    per_page: Annotated[int, Query(ge=1, le=max(PER_PAGE))] = 50,
) -> HTMLResponse:
    found = queries.runs_page(
        session,
        status=status,
        name=name,
        sort=sort,
        descending=order == "desc",
        limit=per_page,
        offset=(page_number - 1) * per_page,
    )
    pages = max(1, math.ceil(found.total / per_page))
    state = {"status": status, "name": name or None, "sort": sort, "order": order}
    state |= {"per_page": per_page}

    def list_url(**changes: Any) -> str:
        return _url(f"{UI}/runs", **(state | {"page": page_number} | changes))

    specs = [r.run.spec for r in found.runs]
    shown = [
        f
        for f in queries.differing_fields(specs)
        if f not in queries.ALWAYS_SHOWN + queries.SHOWN_AS_PROGRESS
    ]
    return page(
        request,
        "runs.html",
        found=found,
        statuses=list(RunStatus),
        live=LIVE,
        columns=[*queries.ALWAYS_SHOWN, *shown],
        state=state,
        page_number=page_number,
        pages=pages,
        per_page_choices=PER_PAGE,
        list_url=list_url,
        here=list_url(),
    )


def cancel_and_delete(
    base: str,
    item_id: Any,
    cancel: Callable[[int, Session], object],
    delete: Callable[[int, Session, Settings], object],
) -> None:
    """The Cancel and Delete buttons of a run's or a sweep's pages (`base` is its list, the path
    parameter `item_id` its id type): each form posts `next`, the page to go back to, which
    after a delete is never the deleted item's own page."""

    @router.post(f"{base}/{{item_id}}/cancel")
    def cancel_form(
        item_id: item_id, session: WriteSessionDep, next: Annotated[str | None, Form()] = None
    ) -> Response:
        cancel(item_id, session)
        return RedirectResponse(_local(next, f"{base}/{item_id}"), status_code=303)

    @router.post(f"{base}/{{item_id}}/delete")
    def delete_form(
        item_id: item_id,
        session: WriteSessionDep,
        settings: SettingsDep,
        next: Annotated[str | None, Form()] = None,
    ) -> Response:
        delete(item_id, session, settings)
        target = _local(next, base)
        own = f"{base}/{item_id}"
        path = urlsplit(target).path.rstrip("/")
        gone = path == own or path.startswith(own + "/")
        return RedirectResponse(base if gone else target, status_code=303)


cancel_and_delete(f"{UI}/runs", RunId, runs_api.cancel_run, runs_api.delete_run)


# --- new run -----------------------------------------------------------------------------


@router.get(f"{UI}/runs/new")
def new_run_form(
    request: Request,
    session: SessionDep,
    from_run: Annotated[int | None, Query(alias="from", ge=1, le=MAX_ID)] = None,
    focus: str | None = None,
) -> HTMLResponse:
    """The form with RunSpec's defaults, or prefilled from a run's spec (a copy to vary)."""
    spec: dict[str, Any] = {}
    source = None
    if from_run is not None:
        source = runs_api.run_out(crud.get_run(session, from_run))
        spec = source.spec.model_dump() | {"name": None}
    return page(
        request,
        "new.html",
        fields=forms.spec_fields(),
        values=forms.form_values(spec),
        errors={},
        source=source,
        focus=focus if focus in RunSpec.model_fields else None,
    )


async def _form_texts(request: Request) -> dict[str, str]:
    """The submitted form's text fields (the new-run form's inputs are derived, not declared)."""
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}


@router.post(f"{UI}/runs/new")
def new_run(
    request: Request,
    settings: SettingsDep,
    session: WriteSessionDep,
    texts: Annotated[dict[str, str], Depends(_form_texts)],
) -> Response:
    """Stores the run and shows its page, or shows the form again with each error by its field."""
    spec, errors = forms.parse_spec(texts, settings)
    if spec is None:
        fields = forms.spec_fields()
        return page(
            request,
            "new.html",
            422,
            fields=fields,
            values={f.name: texts.get(f.name, "") for f in fields},
            errors=errors,
            source=None,
            focus=next(f.name for f in fields if f.name in errors),
        )
    run = crud.create_run(session, spec)
    session.commit()
    return RedirectResponse(f"{UI}/runs/{run.id}", status_code=303)


# --- run page ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """A figure of a page: a view's PNG (``path`` with ``query``), with download links."""

    caption: str
    view: str
    path: str
    query: dict[str, Any]

    def src(self, version: str) -> str:
        """The PNG; ``version`` (the runs' progress) makes a new epoch a new URL to load."""
        return _url(self.path, **self.query, format="png", v=version)

    def download(self, fmt: str) -> str:
        return _url(self.path, **self.query, format=fmt)


@dataclass(frozen=True)
class Download:
    """A view's JSON, linked beside a page's own (the run, the sweep)."""

    name: str
    summary: str
    url: str


def downloads(shown: Sequence[Figure], **chosen: Any) -> list[Download]:
    """The JSON of each view among the figures ``shown``, once, in their order, with the
    page's choices it takes (``scope``, ``tol``) but not a panel's fixed query (JSON has every
    metric and scope a panel picks from)."""
    found: dict[str, Download] = {}
    for figure in shown:
        view = registry.VIEWS[figure.view]
        query = {k: v for k, v in chosen.items() if k in view.parameters}
        name = view.name.removeprefix("sweep_")
        found.setdefault(view.name, Download(name, view.summary, _url(figure.path, **query)))
    return list(found.values())


def figures(
    place: registry.Place,
    subject: int | Sequence[int],
    spec: Mapping[str, Any] | None = None,
    **chosen: Any,
) -> list[Figure]:
    """The figures the view registry places at ``place`` for a run (of ``spec``), runs or a
    sweep: each view gets the page's choices it takes (``scope``, ``tol``), then its panel's
    fixed query; captions name the scope and tolerance shown ({scope}, {which})."""
    tol = chosen.get("tol")
    texts = {
        "scope": describe(chosen.get("scope", "all")),
        "which": "every shared tolerance" if tol is None else f"tolerance {tol:g}",
    }
    found = []
    for view, panel in registry.panels(place):
        if panel.shown_if is not None and not (spec or {}).get(panel.shown_if):
            continue
        path, query = view.url(subject)
        query |= {k: v for k, v in chosen.items() if k in view.parameters} | dict(panel.query)
        found.append(Figure(panel.caption.format(**texts), view.name, path, query))
    return found


@dataclass(frozen=True)
class Mechanism:
    """The run page's "Why weights stay constant": the last epoch's dead units per hidden layer
    and exactly constant weights per weight matrix (from the /units view), and two figures."""

    epoch: int
    hidden: list[dict[str, Any]]
    weights: list[dict[str, Any]]
    figures: list[Figure]


def _mechanism(session: Session, run_row: Run, run: RunOut) -> Mechanism | str:
    """The section's content, or why there is none (a run trained before decaylab measured
    dead units and the spectrum: its views answer 404 with this message)."""
    try:
        units = mechanism.units(session, run_row)
    except NotComputed as exc:
        return str(exc)
    if not units.epochs:
        return "No epoch with dead units and the spectrum stored yet."
    return Mechanism(
        epoch=units.epochs[-1],
        hidden=_dead_units_rows(units),
        weights=[
            {
                "layer": w.layer,
                "name": w.name,
                "parameters": w.parameters,
                "constant": w.constant[-1],
                "explained": w.explained[-1],
                "share": 100 * w.explained[-1] / w.constant[-1] if w.constant[-1] else None,
            }
            for w in units.weights
        ],
        figures=figures("why", run.id, run.spec.model_dump()),
    )


def _dead_units_rows(units: UnitsOut) -> list[dict[str, Any]]:
    return [
        {
            "layer": h.layer,
            "units": h.units,
            "dead": h.dead[-1],
            "percent": 100 * h.dead[-1] / h.units,
        }
        for h in units.hidden
        if h.dead
    ]


def _version(runs: Sequence[RunOut | Run]) -> str:
    """A figure URL's tag for the runs' progress: a new epoch is a new URL, so <img> reloads."""
    return "-".join(f"{r.attempts}.{r.epochs_done}" for r in runs)


def _run_live_context(session: Session, run_row: Run) -> dict[str, Any]:
    run = runs_api.run_out(run_row)
    metrics = analysis.metrics(session, run_row)
    constancy = analysis.constancy_all(session, run_row)
    shown = figures("run", run.id)
    why = _mechanism(session, run_row, run) if metrics.epochs else None
    return {
        "run": run,
        "live": run.status in LIVE,
        "metrics": metrics,
        "constancy": constancy,
        "last": _last_epoch_table(constancy),
        "figures": shown if metrics.epochs else [],
        "why": why,
        "downloads": downloads(shown + (why.figures if isinstance(why, Mechanism) else [])),
        "version": _version([run]),
        "timing": _timing(run, metrics),
    }


def _last_epoch_table(constancy: ConstancyAllOut) -> list[dict[str, Any]]:
    """Rows of the last epoch's % constant: each layer, then the two means; a cell per tol."""
    if not constancy.results or not constancy.results[0].epochs:
        return []
    first = constancy.results[0]
    rows = [
        {"name": layer.name, "parameters": layer.parameters,
         "values": [r.layers[i].percent[-1] for r in constancy.results]}
        for i, layer in enumerate(first.layers)
    ]  # fmt: skip
    rows.append({"name": "mean of all layers", "parameters": None, "mean": True,
                 "values": [r.mean[-1] for r in constancy.results]})  # fmt: skip
    rows.append({"name": "mean of the last two", "parameters": None, "mean": True,
                 "values": [r.last_two_mean[-1] for r in constancy.results]})  # fmt: skip
    return rows


def _timing(run: RunOut, metrics: MetricsOut) -> dict[str, float | None]:
    """Durations the live part shows; none depends on the clock, so that the part (and its ETag)
    stays the same until the run moves on."""
    trained = sum(metrics.epoch_seconds) if metrics.epochs else None
    per_epoch = trained / len(metrics.epochs) if trained is not None else None
    remaining = run.spec.epochs - run.epochs_done
    done = run.finished_at and run.started_at
    return {
        "wall": (run.finished_at - run.started_at).total_seconds() if done else None,
        "trained": trained,
        "per_epoch": per_epoch,
        "eta": per_epoch * remaining if per_epoch and run.status in LIVE and remaining else None,
    }


# The live parts (?part=live) are polled by ui.js; the app's ETag middleware answers 304 while a
# part is unchanged, so polling costs a render but no transfer and no DOM change.


@router.get(f"{UI}/runs/{{run_id}}")
def run_page(
    request: Request, run_id: RunId, session: SessionDep, part: Literal["live"] | None = None
) -> Response:
    run_row = crud.get_run(session, run_id)
    context = _run_live_context(session, run_row)
    if part == "live":
        return page(request, "run_live.html", **context)
    return page(
        request,
        "run.html",
        spec=context["run"].spec.model_dump(),
        neighbours=queries.neighbours(session, run_row),
        **context,
    )


# --- comparison --------------------------------------------------------------------------


@router.get(f"{UI}/compare")
def compare_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    runs: RunIds,
    scope: Annotated[list[str], Query()] = ["all", "last2"],  # noqa: B006 (FastAPI copies it)
    tol: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
    part: Literal["live"] | None = None,
) -> Response:
    if len(runs) < 2:
        return _error_page(request, 422, "Tick at least two runs to compare them.")
    rows = crud.get_runs(session, runs)
    # The tolerances the runs share (NotComputed when none), as GET /compare has them; any
    # other one resolves as in every view (NotComputed says what each run has instead).
    tolerances = analysis.compare_all(session, rows, "all").tolerances
    if tol is not None and tol not in tolerances:
        posthoc.percentages_at(session, rows, tol, settings.run_files)
    constancy = [analysis.constancy_all(session, row) for row in rows]
    layers = min(len(c.results[0].layers) for c in constancy)
    scopes = [s for s in scope if s in ("all", "last2") or (s.isdigit() and int(s) < layers)]
    ids = ",".join(map(str, runs))
    # The runs' spectra side by side, unless one was trained before decaylab measured them.
    ladders = mechanism.ladders(session, rows)
    unmeasured = [row.id for row in rows if ladders[row.id] is None]

    # A figure per chosen scope from the views that take one; the others once.
    def scoped(figure: Figure) -> bool:
        return "scope" in registry.VIEWS[figure.view].parameters

    shown = [f for s in scopes for f in figures("compare", runs, scope=s, tol=tol) if scoped(f)]
    (spectrum,) = [f for f in figures("compare", runs) if not scoped(f)]
    # A run's own views, one per run side by side; None where a run did not measure it.
    each = [
        {
            "caption": panel.caption,
            "missing": f"not measured ({panel.shown_if} was false)" if panel.shown_if else "",
            "runs": [
                (
                    row.id,
                    next(
                        (
                            dataclasses.replace(f, caption=f"run {row.id}")
                            for f in figures("each", row.id, row.spec)
                            if f.view == view.name
                        ),
                        None,
                    ),
                )
                for row in rows
            ],
        }
        for view, panel in registry.panels("each")
    ]
    context = {
        "runs": [runs_api.run_out(row) for row in rows],
        "ids": ids,
        "figures": shown,
        "spectrum": None if unmeasured else spectrum,
        "each": each,
        "unmeasured": unmeasured,
        "fields": queries.differing_fields([row.spec for row in rows]),
        "tolerances": tolerances,
        "tol": tol,
        "scopes": scopes,
        "layer_names": [la.name for la in constancy[0].results[0].layers[:layers]],
        "table": _compare_table(constancy, tolerances, layers),
        "metrics": [analysis.metrics(session, row) for row in rows],
        "live": any(row.status in LIVE for row in rows),
        "version": _version(rows),
    }
    return page(request, "compare_live.html" if part == "live" else "compare.html", **context)


def _compare_table(
    constancy: list[ConstancyAllOut], tolerances: list[float], layers: int
) -> list[dict[str, Any]]:
    """The last epoch's % constant per run: a group of rows per shared tolerance, with both
    means and each layer."""
    groups = []
    for tol in tolerances:
        views = [next(r for r in c.results if r.tolerance == tol) for c in constancy]
        series: list[tuple[str, list[list[float]]]] = [
            ("mean of all layers", [v.mean for v in views]),
            ("mean of the last two", [v.last_two_mean for v in views]),
        ]
        series += [
            (f"layer {i} ({views[0].layers[i].name})", [v.layers[i].percent for v in views])
            for i in range(layers)
        ]
        groups.append(
            {
                "tol": tol,
                "rows": [
                    {"what": what, "values": [v[-1] if v else None for v in values]}
                    for what, values in series
                ],
            }
        )
    return groups
