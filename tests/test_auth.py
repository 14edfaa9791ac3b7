"""Optional bearer-token auth: with DECAYLAB_API_TOKEN set, only /health answers without it."""

from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from server.api import middleware
from server.api.app import create_app
from server.core.settings import Settings
from server.processes import Processes

TOKEN = "s3cret-Token_42"
DOCS = [("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/redoc"), ("GET", "/nowhere")]


@pytest.fixture
def guarded(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"api_token": TOKEN}))) as client:
        yield client


def endpoints(client: TestClient, headers: dict[str, str]) -> list[tuple[str, str]]:
    """Every operation of the OpenAPI document (ids filled in), and the docs pages."""
    schema = client.get("/openapi.json", headers=headers).json()
    ops = [
        (method.upper(), path.replace("{run_id}", "1").replace("{epoch}", "0"))
        for path, operations in schema["paths"].items()
        for method in operations
    ]
    assert len(ops) >= 10
    return ops + DOCS


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x",
     f"Bearer {TOKEN[:-1]}", f"{TOKEN}", "Bearer s3cret-token_42"],
)  # fmt: skip
def test_every_endpoint_but_health_is_401_without_the_token(guarded, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in endpoints(guarded, {"Authorization": f"Bearer {TOKEN}"}):
        response = guarded.request(method, path, headers=headers)
        if path == "/health":
            assert response.status_code == 200
            continue
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"] == "Bearer"
        assert "bearer token" in response.json()["detail"]
    assert guarded.get("/runs", headers=headers).status_code == 401


def test_the_token_opens_every_endpoint(guarded, tiny_spec):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    created = guarded.post("/runs", json=tiny_spec(), headers=auth)
    assert created.status_code == 201
    for method, path in endpoints(guarded, auth):
        if method != "DELETE":
            assert guarded.request(method, path, headers=auth).status_code != 401, path
    # The scheme is case-insensitive; surrounding spaces do not matter.
    assert guarded.get("/runs", headers={"Authorization": f"bearer  {TOKEN} "}).is_success


def test_a_body_is_refused_before_it_is_read(guarded):
    # 401, not 413: an unauthenticated client cannot make the server read a big body.
    response = guarded.post("/runs", content=b"x" * 10**6, headers={"content-type": "text/plain"})
    assert response.status_code == 401


def test_the_comparison_is_constant_time(guarded, monkeypatch):
    compared = []

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return a == b

    monkeypatch.setattr(middleware.hmac, "compare_digest", spy)
    assert guarded.get("/runs", headers={"Authorization": "Bearer guess"}).status_code == 401
    assert compared == [(b"guess", TOKEN.encode())]


def test_openapi_declares_the_bearer_scheme_and_health_open(guarded):
    schema = guarded.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert schema["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert schema["security"] == [{"bearer": []}]
    assert schema["paths"]["/health"]["get"]["security"] == []


def test_without_a_token_everything_is_open_and_undeclared(client, monkeypatch):
    monkeypatch.setenv("DECAYLAB_API_TOKEN", "")  # compose passes an unset variable as empty
    assert Settings().api_token is None
    assert client.get("/runs").status_code == 200
    assert "security" not in client.get("/openapi.json").json()


@pytest.mark.slow
def test_real_processes_with_a_token(tmp_path, tiny_spec):
    procs = Processes(tmp_path, lease_seconds="2", api_token=TOKEN)
    try:
        procs.start_server()  # waits on /health, which needs no token
        assert Settings().host == "127.0.0.1"  # the default bind: this machine only
        assert httpx.get(f"{procs.url}/runs").status_code == 401
        # procs passes the token it was given, as scripts do with DECAYLAB_API_TOKEN.
        created = procs.api("POST", "/runs", json=tiny_spec(epochs=1))
        assert created.status_code == 201
        procs.start_worker()  # talks to the database, not the API: the token is not its concern
        assert procs.wait_finished(created.json()["id"])["status"] == "succeeded"
        # uvicorn's chunked reader, too, stops at the body limit with a JSON 413.
        chunks = iter([b'{"name": "', b"x" * 40_000, b"x" * 40_000, b'"}'])
        streamed = procs.api("POST", "/runs", content=chunks)
        assert streamed.request.headers["transfer-encoding"] == "chunked"
        assert streamed.status_code == 413
        assert "DECAYLAB_MAX_BODY_BYTES" in streamed.json()["detail"]
    finally:
        procs.close()
