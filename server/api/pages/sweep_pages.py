"""The browser UI's sweep pages: the sweeps list, a sweep's page and the new-sweep form.

Numbers and figures come from server.views.sweeps and the sweep views' PNGs, as the JSON API's do;
cancel, delete and submit are form POSTs (refused cross-origin by the middleware)."""

import math
from typing import Annotated, Any, Literal

from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from server.api.deps import SessionDep, SettingsDep, WriteSessionDep
from server.api.pages import queries, sweep_forms
from server.api.pages.routes import (
    LIVE,
    PER_PAGE,
    UI,
    Figure,
    _url,
    _version,
    cancel_and_delete,
    downloads,
    figures,
    page,
    router,
)
from server.api.routers import sweeps as sweeps_api
from server.api.routers.params import MAX_ID, Scope, Tolerance
from server.core.errors import NotComputed
from server.core.experiment import CLASSES, DATASET_SIZES, IN_FEATURES, tensor_names
from server.core.schemas import SweepConstancyAllOut, SweepOut
from server.core.scope import describe
from server.store.lifecycle import FINISHED
from server.store.models import Sweep
from server.views import reproduction, sweeps
from server.views.figures.draw import cut_note

SWEEPS = f"{UI}/sweeps"
SweepId = sweeps_api.SweepId


def _finished(sweep: Any) -> int:
    return sum(sweep.progress.by_status.get(s, 0) for s in FINISHED)


# --- sweeps list --------------------------------------------------------------------------


@router.get(SWEEPS)
def sweeps_list(
    request: Request,
    session: SessionDep,
    page_number: Annotated[int, Query(alias="page", ge=1, le=MAX_ID)] = 1,
    per_page: Annotated[int, Query(ge=1, le=max(PER_PAGE))] = 50,
) -> HTMLResponse:
    total, found = sweeps.list_sweeps(session, per_page, (page_number - 1) * per_page)
    pages = max(1, math.ceil(total / per_page))

    def list_url(**changes: Any) -> str:
        return _url(SWEEPS, **({"page": page_number, "per_page": per_page} | changes))

    return page(
        request,
        "sweeps.html",
        sweeps=found,
        total=total,
        finished=_finished,
        live=LIVE,
        page_number=page_number,
        pages=pages,
        per_page=per_page,
        per_page_choices=PER_PAGE,
        list_url=list_url,
        here=list_url(),
    )


# --- new sweep ----------------------------------------------------------------------------


def _form_page(
    request: Request,
    session: Session,
    form: sweep_forms.SweepForm,
    errors: dict[str, str],
    status_code: int = 200,
) -> HTMLResponse:
    # What ui.js needs to say, before submitting, what the grid queues and for about how long.
    sizing = {
        "seconds_per_cost": queries.seconds_per_cost(session),
        "train_sizes": {name: sizes[0] for name, sizes in DATASET_SIZES.items()},
        "inputs": IN_FEATURES,
        "classes": CLASSES,
        "list_fields": [f.name for f in sweep_forms.base_fields() if f.kind == "list"],
        "list_separator": sweep_forms.LIST_SEPARATOR,
    }
    return page(
        request,
        "sweep_new.html",
        status_code,
        form=form,
        fields=sweep_forms.base_fields(),
        grid_fields=sweep_forms.grid_fields(),
        errors=errors,
        focus=next(iter(errors), None),
        list_separator=sweep_forms.LIST_SEPARATOR,
        sizing=sizing,
    )


@router.get(f"{SWEEPS}/new")
def new_sweep_form(
    request: Request,
    session: SessionDep,
    from_sweep: Annotated[int | None, Query(alias="from", ge=1, le=MAX_ID)] = None,
) -> HTMLResponse:
    """The form with RunSpec's defaults and a weight decay × seed grid, or a sweep's copy."""
    form = sweep_forms.SweepForm.empty()
    if from_sweep is not None:
        source = sweeps.get_sweep(session, from_sweep)
        form = sweep_forms.SweepForm.from_sweep(
            source.name, source.base, source.grid, source.priority
        )
    return _form_page(request, session, form, {})


async def _submitted(request: Request) -> sweep_forms.SweepForm:
    return sweep_forms.read(await request.form())


@router.post(f"{SWEEPS}/new")
def new_sweep(
    request: Request,
    settings: SettingsDep,
    session: WriteSessionDep,
    submitted: Annotated[sweep_forms.SweepForm, Depends(_submitted)],
) -> Response:
    """Stores the sweep and shows its page, or the form again with each error by its place;
    nothing is stored on a refusal."""
    body, specs, errors = sweep_forms.parse(submitted, settings)
    if body is None:
        return _form_page(request, session, submitted, errors, 422)
    sweep = sweeps.create_sweep(session, body, specs)
    session.commit()
    return RedirectResponse(f"{SWEEPS}/{sweep.id}", status_code=303)


# --- cancel and delete --------------------------------------------------------------------


cancel_and_delete(SWEEPS, SweepId, sweeps_api.cancel_sweep, sweeps_api.delete_sweep)


# --- sweep page ---------------------------------------------------------------------------


def _figures(sweep_id: int, tol: float | None, scope: str, summary: bool = True) -> list[Figure]:
    """The registry's sweep figures; the dose-response summary once every group has an epoch
    (its view is at one epoch all groups have)."""
    shown = figures("sweep", sweep_id, tol=tol, scope=scope)
    return shown if summary else [f for f in shown if f.view != "sweep_summary"]


def _layer_names(sweep: SweepOut) -> list[str]:
    """The layers the engine measures, from the first member's spec (each layer's weight, then
    with include_biases its bias), so that the choice is there before any epoch is stored; a
    layer past a member's own is refused by the view."""
    spec = sweep.runs[0].spec
    return tensor_names(spec.hidden_sizes, spec.include_biases)


def _shared_tolerances(sweep: SweepOut) -> list[float]:
    """The tolerances every member measures (the views' choices), from their specs."""
    first = sweep.runs[0].spec.tolerances
    return [t for t in first if all(t in r.spec.tolerances for r in sweep.runs[1:])]


def _groups_table(view: SweepConstancyAllOut, tol: float | None) -> list[dict[str, Any]]:
    """Per tolerance shown, each group at its last epoch: n, mean and interval, as the view."""
    tables = []
    for result in view.results:
        if tol is not None and result.tolerance != tol:
            continue
        rows = [
            {
                "index": i,
                "values": g.values,
                "n": g.n,
                "run_ids": g.run_ids,
                "epoch": g.epochs[-1] if g.epochs else None,
                "mean": g.mean[-1] if g.mean else None,
                "ci_low": g.ci_low[-1] if g.ci_low else None,
                "ci_high": g.ci_high[-1] if g.ci_high else None,
            }
            for i, g in enumerate(result.groups)
        ]
        tables.append({"tol": result.tolerance, "rows": rows})
    return tables


def _sweep_live_context(
    session: Session, row: Sweep, tol: float | None, scope: str
) -> dict[str, Any]:
    sweep = sweeps.sweep_out(session, row)
    by = sweeps.default_by(row)
    try:
        view = sweeps.constancy(session, row, None, scope, by)
    except NotComputed as exc:
        view, missing = None, str(exc)
    else:
        missing = None
        assert isinstance(view, SweepConstancyAllOut)
        if tol is not None and tol not in view.tolerances:
            raise NotComputed(f"the runs share no tolerance {tol:g}; they share {view.tolerances}")
    shown = _figures(row.id, tol, scope, view is not None and _every_group_started(view))
    return {
        "sweep": sweep,
        "by": by,
        "grid_fields": list(row.grid),
        "live": sweep.status in LIVE,
        "finished": _finished(sweep),
        "view": view,
        "missing": missing,
        "tolerances": view.tolerances if view else _shared_tolerances(sweep),
        "table": _groups_table(view, tol) if view else [],
        "figures": shown if view else [],
        "downloads": downloads(shown, scope=scope, tol=tol),
        "version": _version(sweep.runs),
        "tol": tol,
        "cut_note": cut_note("runs", "the JSON and CSV views give it uncut"),
        "scope": scope,
        "scope_text": describe(scope),
    }


def _every_group_started(view: SweepConstancyAllOut) -> bool:
    return all(g.epochs for g in view.results[0].groups)


@router.get(f"{SWEEPS}/{{sweep_id}}")
def sweep_page(
    request: Request,
    sweep_id: SweepId,
    session: SessionDep,
    tol: Tolerance = None,
    scope: Scope = "all",
    part: Literal["live"] | None = None,
) -> Response:
    row = sweeps.get_sweep(session, sweep_id)
    context = _sweep_live_context(session, row, tol, str(scope))
    if part == "live":
        return page(request, "sweep_live.html", **context)
    return page(
        request,
        "sweep.html",
        layer_names=_layer_names(context["sweep"]),
        reproducible=reproduction.shape_problem(sweeps.members(session, row.id)) is None,
        **context,
    )
