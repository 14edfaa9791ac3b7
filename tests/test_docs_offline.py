"""Every HTML page works without internet: a real Chromium loads /docs and a run's page from
a real API process with every request to another origin failed; Swagger UI renders every
operation of the document, and the run page needs nothing from elsewhere."""

import shutil
from urllib.parse import urlsplit

import pytest

from server.processes import Processes

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs a chromium binary (apt-get install chromium)")
def test_docs_render_every_operation_with_the_internet_blocked(processes: Processes):
    sync_api = pytest.importorskip("playwright.sync_api")
    processes.start_server()
    run_id = processes.api(
        "POST", "/runs", json={"name": "offline", "dataset": "synthetic"}
    ).json()["id"]
    origin = urlsplit(processes.url)
    operations = [
        (method, path)
        for path, ops in processes.api("GET", "/openapi.json").json()["paths"].items()
        for method in ops
    ]
    blocked: list[str] = []
    failed: list[str] = []
    errors: list[str] = []

    def offline(route, request) -> None:  # noqa: ANN001 (playwright's types)
        url = urlsplit(request.url)
        if url.scheme in ("http", "https") and url.netloc != origin.netloc:
            blocked.append(request.url)
            route.abort("internetdisconnected")
        else:
            route.continue_()

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.route("**/*", offline)
            page.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            response = page.goto(f"{processes.url}/docs", wait_until="networkidle")
            assert response is not None and response.status == 200
            page.wait_for_selector(".opblock", timeout=20_000)
            shown = page.locator(".opblock").count()
            title = page.locator(".info .title").inner_text()
            # The old report URL lands on the run's page.
            report = page.goto(f"{processes.url}/runs/{run_id}/report", wait_until="networkidle")
            assert report is not None and report.status == 200
            assert page.url.endswith(f"/ui/runs/{run_id}")
            heading = page.locator("h1").inner_text()
        finally:
            browser.close()
    assert not blocked, f"/docs asked for other origins: {blocked}"
    assert not failed and not errors, (failed, errors)
    assert shown == len(operations), (shown, operations)
    assert title.startswith("decaylab")
    assert "offline" in heading
