"""The view registry: every analysis view declared once.

A view is a plain function, FastAPI's parameters in and a :class:`Result` out, registered with
``@view(...)`` beside what it computes (server/views/analysis.py, mechanism.py, sweeps.py, ...).
Its declaration says its name, path, subject (a run, runs, a sweep), summary, response model,
drawing and the page panels that show it. From it come:

- the GET route answering JSON, CSV (server/views/tables.py) and PNG (server/views/figures/),
  negotiated by ``format`` or ``Accept``; its PNG twin ``<path>.png``; its OpenAPI entry, with
  the function's name as the operation id;
- its answer cache and ETag (:class:`ViewCache`): an answer is computed once per (view, stamp of
  its runs, query) and then served from memory; a 304 costs one small query. The route is
  async and does its blocking part (the read session, the stamp, a computation on a miss) in
  one call to the thread pool: FastAPI would spend a hop there on each sync dependency;
- the pages' figure panels and download links (:func:`panels`);
- the client's methods and the CLI's ``export --view`` choices: ``python -m
  server.views.registry`` writes them as the plain table ``decaylab/views.py`` (the client
  imports no server code), and tests/test_views.py checks that it is current.

``VIEWS`` lists the views in the order they were declared; :data:`MODULES` lists the modules
that declare them, imported by the app."""

import functools
import hashlib
import importlib
import inspect
import json
import sys
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from cachetools import LRUCache
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from server.api.deps import InOneTrip, database_of
from server.api.etag import matches
from server.core.schemas import ErrorOut, RunStatus
from server.store import crud
from server.store.lifecycle import FINISHED
from server.views import tables
from server.views.figures.answer import CSV, PNG, PNG_RESPONSE, VARY, Answer, AnswerDep
from server.views.figures.render import Draw

# The modules whose ``@view`` declarations make up the API's views, in the order of the
# OpenAPI document. A new view module is one more line here.
MODULES = (
    "server.views.runs",
    "server.views.mechanism",
    "server.views.causes",
    "server.views.sweeps",
)

Subject = Literal["run", "runs", "sweep"]
# Where a page shows a view: the run page's figures and its "why weights stay constant"
# section; the comparison page (a view of the runs, or "each": a run's view for every run,
# side by side); the sweep page.
Place = Literal["run", "why", "compare", "each", "sweep"]
# The path or query parameter that names a view's subject.
SUBJECT_PARAMETER: dict[Subject, str] = {"run": "run_id", "runs": "runs", "sweep": "sweep_id"}
# Parameters of every view that shape the answer's form, not its data.
FORM_PARAMETERS = frozenset({"format", "width", "height", "dpi"})


@dataclass(frozen=True)
class Panel:
    """A figure of a page: the view drawn with ``query`` fixed, under ``caption``; for a run's
    view, only when the run's spec field ``shown_if`` is true (what it measured on request)."""

    place: Place
    caption: str
    query: Mapping[str, Any] = field(default_factory=dict)
    shown_if: str | None = None


@dataclass(frozen=True)
class Result:
    """What a view function returns: its data (the JSON answer) and what its drawing needs
    besides (hashable: the scope, a metric, the runs' label)."""

    data: BaseModel
    figure: tuple[Hashable, ...] = ()


@dataclass(frozen=True)
class View:
    name: str
    path: str
    subject: Subject
    summary: str
    description: str
    model: Any
    draw: Draw
    panels: tuple[Panel, ...]
    # The query parameters a caller may give (the subject and the form parameters aside).
    parameters: tuple[str, ...]
    function: Callable[..., Result]
    # The route's: the function with the answer's dependencies added (see ``view``).
    endpoint: Callable[..., Response] | None = None
    not_found: str = ""
    tags: tuple[str, ...] = ()

    def url(self, subject: int | Sequence[int]) -> tuple[str, dict[str, Any]]:
        """The path and subject query for a run, runs or a sweep."""
        if self.subject == "runs":
            assert not isinstance(subject, int)
            return self.path, {"runs": ",".join(map(str, subject))}
        return self.path.format(**{SUBJECT_PARAMETER[self.subject]: subject}), {}


VIEWS: dict[str, View] = {}


# --- the answer cache ----------------------------------------------------------------------

DEFAULT_CACHE_BYTES = 128 * 2**20
# A cached answer holds its response model and its JSON: the model's Python objects take a few
# times the JSON's bytes, so an entry is counted as this many times its JSON.
MODEL_OVERHEAD = 4


@dataclass
class Entry:
    """One computed answer: the result, its JSON, and its CSV once asked for."""

    result: Result
    json: bytes
    digest: bytes
    csv: bytes | None = None

    @property
    def size(self) -> int:
        return MODEL_OVERHEAD * len(self.json) + len(self.csv or b"")


class ViewCache:
    """Computed answers by key, in an LRU bounded by bytes; concurrent requests for one key
    share one computation (single flight), and a failed computation (a 404) is not kept.

    A key holds the stamp of the view's runs (crud.stamps): whatever changes an answer (a new
    epoch, a restart, a cancel, a rename) changes the stamp, so an old entry is never found
    again and ages out. Each API process has its own cache; they agree because the stamp is
    read from the one database."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self._lock = threading.Lock()
        self._cache: LRUCache[Hashable, Entry] = LRUCache(
            maxsize=max_bytes, getsizeof=lambda e: e.size
        )
        self._pending: dict[Hashable, Future[Entry]] = {}
        # For tests and the benchmark: computations made, answers served from the cache.
        self.computed = 0
        self.hits = 0

    def get(self, key: Hashable, compute: Callable[[], Result]) -> Entry:
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None:
                self.hits += 1
                return entry
            pending = self._pending.get(key)
            if pending is None:
                future: Future[Entry] = Future()
                self._pending[key] = future
                self.computed += 1
        if pending is not None:
            return pending.result()
        try:
            result = compute()
            body = result.data.model_dump_json().encode()
            entry = Entry(result, body, hashlib.blake2b(body, digest_size=16).digest())
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._pending.pop(key, None)
        future.set_result(entry)
        self._store(key, entry)
        return entry

    def _store(self, key: Hashable, entry: Entry) -> None:
        with self._lock:
            if entry.size <= self._cache.maxsize:
                self._cache[key] = entry

    def csv(self, key: Hashable, entry: Entry) -> bytes:
        if entry.csv is None:
            entry.csv = tables.csv_text(entry.result.data).encode()
            self._store(key, entry)  # re-counted with its CSV
        return entry.csv

    @property
    def cached_bytes(self) -> int:
        return int(self._cache.currsize)


def _frozen(value: Any) -> Hashable:
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, BaseModel):
        return _frozen(value.model_dump())
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    return value


def _stamp(view: View, session: Session, arguments: Mapping[str, Any]) -> Hashable:
    subject = arguments[SUBJECT_PARAMETER[view.subject]]
    if view.subject == "sweep":
        return crud.sweep_stamp(session, subject)
    return crud.stamps(session, [subject] if view.subject == "run" else subject)


def _etag(key: Hashable, form: Hashable) -> str:
    digest = hashlib.blake2b(repr((key, form)).encode(), digest_size=16)
    return f'"{digest.hexdigest()}"'


def _respond(view: View, arguments: dict[str, Any], answer: Answer, request: Request) -> Response:
    """The view's answer in the request's format: from the cache, or computed once. Runs in a
    worker thread, in a read session of its own (the view function's ``session``)."""
    cache: ViewCache = request.app.state.view_cache
    query = tuple(
        (name, _frozen(value))
        for name, value in sorted(arguments.items())
        if name in view.parameters or name == SUBJECT_PARAMETER[view.subject]
    )
    key = (view.name, _stamp(view, arguments["session"], arguments), query)
    form = (answer.format, answer.options if answer.format == "png" else None)
    headers = VARY | {"ETag": _etag(key, form)}
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and matches(if_none_match, headers["ETag"]):
        return Response(status_code=304, headers=headers)
    entry = cache.get(key, functools.partial(view.function, **arguments))
    if answer.format == "json":
        return Response(entry.json, media_type="application/json", headers=headers)
    if answer.format == "csv":
        return Response(cache.csv(key, entry), media_type=CSV, headers=headers)
    result = entry.result
    png = answer.renderer.render(
        view.draw, result.data, answer.options, *result.figure, digest=entry.digest
    )
    return Response(png, media_type=PNG, headers=headers)


# --- declaring a view ----------------------------------------------------------------------


def view(
    name: str,
    path: str,
    *,
    subject: Subject,
    summary: str,
    model: Any,
    draw: Draw,
    not_found: str,
    tags: Sequence[str],
    panels: Sequence[Panel] = (),
) -> Callable[[Callable[..., Result]], Callable[..., Result]]:
    """Register ``function`` as the view ``name`` at GET ``path`` (see the module's doc)."""

    def register(function: Callable[..., Result]) -> Callable[..., Result]:
        if name in VIEWS:
            raise ValueError(f"view {name!r} is declared twice")
        signature = inspect.signature(function)
        if "session" not in signature.parameters:
            raise TypeError(f"view {name!r} must take the request's session as `session`")
        parameters = tuple(
            p.name
            for p in signature.parameters.values()
            if p.name not in {"session", "settings", SUBJECT_PARAMETER[subject]}
        )
        declared = View(
            name=name,
            path=path,
            subject=subject,
            summary=summary,
            description=inspect.getdoc(function) or "",
            model=model,
            draw=draw,
            panels=tuple(panels),
            parameters=parameters,
            function=function,
        )

        async def endpoint(*, _answer: AnswerDep, _request: Request, **arguments: Any) -> Response:
            trip = InOneTrip(database_of(_request).reader)
            return await trip(
                lambda session: _respond(
                    declared, arguments | {"session": session}, _answer, _request
                )
            )

        endpoint.__name__ = function.__name__
        endpoint.__doc__ = function.__doc__
        extra = [
            inspect.Parameter("_answer", inspect.Parameter.KEYWORD_ONLY, annotation=AnswerDep),
            inspect.Parameter("_request", inspect.Parameter.KEYWORD_ONLY, annotation=Request),
        ]
        # The function's parameters but its session, which the endpoint opens.
        endpoint.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[
                p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                for p in signature.parameters.values()
                if p.name != "session"
            ]
            + extra,
            return_annotation=Response,
        )
        VIEWS[name] = replace(declared, endpoint=endpoint, not_found=not_found, tags=tuple(tags))
        return function

    return register


def load() -> dict[str, View]:
    """Every view, its declaring modules imported; in the order of MODULES, then of
    declaration (one module may import another, which then declares its views first)."""
    for module in MODULES:
        importlib.import_module(module)
    ordered = sorted(VIEWS.values(), key=lambda v: MODULES.index(v.function.__module__))
    if list(VIEWS.values()) != ordered:
        VIEWS.clear()
        VIEWS.update((v.name, v) for v in ordered)
    return VIEWS


def routes() -> APIRouter:
    """A router with every view's GET route, in the order of ``load``."""
    router = APIRouter()
    for v in load().values():
        assert v.endpoint is not None
        router.add_api_route(
            v.path,
            v.endpoint,
            methods=["GET"],
            name=v.function.__name__,
            summary=v.summary,
            tags=list(v.tags),
            response_model=v.model,
            responses={404: {"model": ErrorOut, "description": v.not_found}} | PNG_RESPONSE,
        )
    return router


def panels(place: Place) -> list[tuple[View, Panel]]:
    """The figures a page shows at ``place``, in declaration order."""
    return [(v, p) for v in load().values() for p in v.panels if p.place == place]


# --- the client's table ----------------------------------------------------------------------

CLIENT_TABLE = "decaylab/views.py"


def _literal(value: Any) -> str:
    """Python source for a str or a tuple of str, in the repository's (ruff's) quoting."""
    if isinstance(value, tuple):
        items = ", ".join(_literal(v) for v in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    return json.dumps(value, ensure_ascii=False)


def client_table() -> str:
    """decaylab/views.py: the views as the client and the CLI know them."""
    lines = [
        '"""The API\'s analysis views, as the server\'s registry declares them, and its run',
        "statuses.",
        "",
        "Generated from server/views/registry.py by ``python -m server.views.registry``",
        "(tests/test_views.py checks that it is current): do not edit. The client's view",
        'methods and the CLI\'s ``export --view`` choices come from this table."""',
        "",
        "from typing import Literal, NamedTuple",
        "",
        "# A run's statuses, and those it ends in (server/store/lifecycle.py).",
        f"STATUSES = {_literal(tuple(s.value for s in RunStatus))}",
        f"FINISHED = frozenset({_literal(tuple(sorted(s.value for s in FINISHED)))})",
        "",
        "",
        "class View(NamedTuple):",
        "    path: str",
        "    # What the path or the runs parameter names: a run, runs, or a sweep.",
        '    subject: Literal["run", "runs", "sweep"]',
        "    # The query parameters the view takes besides its subject and the answer's form.",
        "    parameters: tuple[str, ...]",
        "    summary: str",
        "",
        "",
        "VIEWS: dict[str, View] = {",
    ]
    for v in load().values():
        lines += [
            f"    {_literal(v.name)}: View(",
            f"        {_literal(v.path)},",
            f"        {_literal(v.subject)},",
            f"        {_literal(v.parameters)},",
            f"        {_literal(v.summary)},",
            "    ),",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    # As a script this file is __main__; the views register with the importable module.
    from server.views import registry as imported

    sys.stdout.write(imported.client_table())
