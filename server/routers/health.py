from fastapi import APIRouter, HTTPException
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from server.deps import SessionDep
from server.schemas import ErrorOut, HealthOut

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    summary="Liveness: 200 once the database answers",
    responses={503: {"model": ErrorOut, "description": "The database does not answer"}},
)
def health(session: SessionDep) -> HealthOut:
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise HTTPException(503, f"database unavailable: {type(exc).__name__}") from exc
    return HealthOut(status="ok")
