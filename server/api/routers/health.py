from fastapi import APIRouter, HTTPException, Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from server.api.deps import ReadTrip
from server.core.schemas import ErrorOut, HealthOut

router = APIRouter(tags=["health"])

UNAVAILABLE = {503: {"model": ErrorOut, "description": "The database does not answer"}}


def _check(session: Session) -> None:
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise HTTPException(503, f"database unavailable: {type(exc).__name__}") from exc


@router.get("/health", summary="Liveness: 200 once the database answers", responses=UNAVAILABLE)
async def health(trip: ReadTrip) -> HealthOut:
    await trip(_check)
    return HealthOut(status="ok")


@router.head(
    "/health",
    summary="Liveness without a body (load balancers, curl -I)",
    response_class=Response,
    responses={200: {"description": "The database answers"}} | UNAVAILABLE,
)
async def health_head(trip: ReadTrip) -> Response:
    await trip(_check)
    return Response()
