"""The UI page of a sweep's reproduction: the write-up's claims re-checked, the numbers of
``GET /sweeps/{id}/reproduction`` (server/views/reproduction.py) and its figures."""

from fastapi import Request
from fastapi.responses import HTMLResponse

from server.api.deps import SessionDep
from server.api.pages.routes import page, router
from server.api.pages.sweep_pages import SWEEPS, SweepId
from server.views import reproduction, sweeps


@router.get(f"{SWEEPS}/{{sweep_id}}/reproduction")
def reproduction_page(request: Request, sweep_id: SweepId, session: SessionDep) -> HTMLResponse:
    report = reproduction.reproduction(session, sweeps.get_sweep(session, sweep_id))
    return page(
        request,
        "reproduction.html",
        report=report,
        number=reproduction.number,
        interval=reproduction.interval_text,
        cut=reproduction.CUT_NOTE if any(map(reproduction.is_cut, report.claims)) else None,
    )
