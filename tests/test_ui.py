"""The browser UI in a real Chromium against real server and worker processes.

Every test watches the page: no console error, no failed request, no answer >= 400 but those it
expects, and no request to anywhere but the server (the UI must work offline)."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.processes import Processes

pytestmark = pytest.mark.slow

TOKEN = "ui-test-token_0123456789"
IMAGES_LOADED = "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"


@dataclass
class Watch:
    """What a page did: requests, failures, error answers and console errors."""

    # The server's processes; their URL is known once the test has started the server.
    processes: Processes
    urls: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("request", lambda r: self.urls.append(r.url))
        page.on("response", lambda r: r.status >= 400 and self.errors.append(f"{r.status} {r.url}"))
        page.on("console", lambda m: m.type == "error" and self.console.append(m.text))
        page.on("pageerror", lambda e: self.console.append(str(e)))
        # An abort is the browser dropping a request when the page moves on, not a failure.
        page.on("requestfailed", self._failed)

    def _failed(self, request: Any) -> None:
        if request.failure != "net::ERR_ABORTED":
            self.failed.append(f"{request.failure} {request.url}")

    def check(self, expected_errors: tuple[str, ...] = ()) -> None:
        """``expected_errors``: "status url" prefixes of answers the test provoked."""
        assert self.failed == []
        # Chromium logs each error answer to the console too.
        logged = tuple(
            f"Failed to load resource: the server responded with a status of {e.split()[0]}"
            for e in expected_errors
        )
        assert [m for m in self.console if not m.startswith(logged)] == []
        assert [e for e in self.errors if not e.startswith(expected_errors)] == []
        outside = [u for u in self.urls if not u.startswith(self.processes.url + "/")]
        assert outside == [], "requests left the server"


@pytest.fixture
def page(browser: Any, processes: Processes) -> Iterator[tuple[Any, Watch]]:
    """A fresh browser context on the test's server, watched."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    watch = Watch(processes)
    watch.attach(tab)
    yield tab, watch
    context.close()


def submit(processes: Processes, **spec: Any) -> int:
    tiny = {"dataset": "synthetic", "hidden_sizes": [32], "train_size": 512, "test_size": 256}
    response = processes.api("POST", "/runs", json=tiny | {"epochs": 3} | spec)
    response.raise_for_status()
    return response.json()["id"]


def images_load(tab: Any, count: int) -> None:
    """The page shows ``count`` images and every one of them loads (a broken one never does)."""
    assert tab.locator("img").count() == count
    tab.wait_for_function(IMAGES_LOADED)


def shown_percentages(scope: Any, selector: str) -> list[tuple[float, str]]:
    """(data-value, text) of each percentage under ``selector`` in ``scope`` (page or element)."""
    cells = scope.locator(f"{selector} .pct".strip())
    return [
        (float(cells.nth(i).get_attribute("data-value")), cells.nth(i).inner_text())
        for i in range(cells.count())
    ]


def test_list_run_page_and_comparison(processes, page):
    tab, watch = page
    processes.start_server()
    processes.start_worker()
    ids = [submit(processes, name=f"wd {d}", weight_decay=d) for d in (0.0, 0.001)]
    for run_id in ids:
        assert processes.wait_finished(run_id)["status"] == "succeeded"

    tab.goto(processes.url + "/")
    assert tab.url == f"{processes.url}/ui/runs"
    rows = tab.locator("table.runs tbody tr")
    assert rows.count() == 2
    assert "succeeded" in rows.first.inner_text() and "3 / 3" in rows.first.inner_text()

    tab.get_by_role("link", name="wd 0.001").click()
    tab.wait_for_url(f"**/ui/runs/{ids[1]}")
    heading = tab.get_by_role("heading", level=1).inner_text()
    assert heading == f"run {ids[1]} “wd 0.001” (weight decay 0.001)"
    images_load(tab, 8)  # six figures, then the dead units and the spectrum
    # The numbers are the JSON view's, to the last digit (data-value) and as shown (3 decimals).
    view = processes.api("GET", f"/runs/{ids[1]}/constancy").json()
    expected = []
    for layer in range(len(view["results"][0]["layers"])):
        expected += [r["layers"][layer]["percent"][-1] for r in view["results"]]
    expected += [r["mean"][-1] for r in view["results"]]
    expected += [r["last_two_mean"][-1] for r in view["results"]]
    shown = shown_percentages(tab, "#constancy-table")
    assert [value for value, _ in shown] == expected
    for value, text in shown:
        assert float(text) == pytest.approx(value, rel=5e-3, abs=5e-4)
    metrics = processes.api("GET", f"/runs/{ids[1]}/metrics").json()
    test_accuracy = tab.locator("#metrics-table tr", has_text="test").locator("td").nth(1)
    assert float(test_accuracy.get_attribute("data-value")) == metrics["test_accuracy"][-1]
    # Why weights stay constant: the last epoch's dead units and explained counts, as /units.
    units = processes.api("GET", f"/runs/{ids[1]}/units").json()
    dead = tab.locator("#dead-units-table td[data-value]").evaluate_all(
        "cells => cells.map(c => Number(c.dataset.value))"
    )
    assert dead == [h["dead"][-1] for h in units["hidden"]]
    counts = tab.locator("#explained-table td[data-value]").evaluate_all(
        "cells => cells.map(c => Number(c.dataset.value))"
    )
    assert counts == [n for w in units["weights"] for n in (w["constant"][-1], w["explained"][-1])]
    for view in ("units", "spectrum"):
        assert tab.locator(f'#why img[src^="/runs/{ids[1]}/{view}?format=png"]').count() == 1
    # Its neighbour in weight decay is offered for comparison.
    assert "weight decay" in tab.locator("#h-similar + form").inner_text()

    tab.get_by_role("link", name="Runs", exact=True).first.click()
    compare = tab.get_by_role("button", name="Compare ticked runs")
    assert compare.is_disabled()
    # By keyboard: Space ticks a box, Enter presses the button.
    for run_id in ids:
        tab.get_by_label(f"compare run {run_id}").press("Space")
    assert compare.is_enabled()
    compare.press("Enter")
    tab.wait_for_url("**/ui/compare?*")
    title = tab.get_by_role("heading", level=1).inner_text()
    assert title == "Compare 2 runs"
    for run_id in ids:
        assert tab.locator(f'th[data-run="{run_id}"]').count() == 1
        assert tab.get_by_role("link", name=f"run {run_id} “wd", exact=False).count() >= 1
    images_load(tab, 3)  # the means of all layers and of the last two, the spectra
    assert tab.locator('#spectrum img[src^="/compare/spectrum?"]').count() == 1
    # The table's columns are the runs in the page's order; the first row their all-layer mean.
    columns = tab.locator("th[data-run]").evaluate_all("c => c.map(e => e.dataset.run)")
    joint = processes.api("GET", "/compare", params={"runs": ",".join(columns), "tol": 0})
    means = [r["percent"][-1] for r in joint.json()["runs"]]
    row = tab.locator('tbody[data-tol="0.0"] tr').first
    assert [value for value, _ in shown_percentages(row, "")] == means

    tab.get_by_label("Tolerance").select_option("0.01")  # applies at once
    tab.wait_for_url("**tol=0.01**")
    tab.get_by_label("layer 1").check()
    tab.get_by_role("button", name="Show").click()
    tab.wait_for_url("**scope=1**")
    images_load(tab, 4)

    # Deleting from the list asks first; saying no changes nothing.
    tab.goto(f"{processes.url}/ui/runs")
    delete = tab.get_by_role("button", name="Delete").first
    tab.once("dialog", lambda dialog: dialog.dismiss())
    delete.click()
    assert tab.locator("table.runs tbody tr").count() == 2
    tab.once("dialog", lambda dialog: dialog.accept())
    delete.click()
    tab.wait_for_function("document.querySelectorAll('table.runs tbody tr').length == 1")
    assert processes.api("GET", f"/runs/{ids[1]}").status_code == 404
    watch.check()


def test_new_run_form_refuses_bad_values_and_follows_a_good_run_live(processes, page):
    tab, watch = page
    processes.start_server()
    tab.goto(processes.url + "/ui/runs/new")
    # Every field of the spec, with its default and its rule.
    assert tab.get_by_label("epochs").input_value() == "50"
    assert "1000" in tab.locator("#rule-epochs").inner_text()
    tab.get_by_label("name").fill("from the form")
    tab.get_by_label("dataset").select_option("synthetic")
    tab.get_by_label("epochs").fill("3")
    tab.get_by_label("hidden_sizes").fill("32")
    tab.get_by_label("train_size").fill("512")
    tab.get_by_label("test_size").fill("256")

    # The page's own check: a negative weight decay is never sent.
    tab.get_by_label("weight_decay").fill("-1")
    tab.get_by_role("button", name="Submit the run").click()
    assert tab.url.endswith("/ui/runs/new")
    assert tab.eval_on_selector("#weight_decay", "e => e.validity.valid") is False
    tab.get_by_label("weight_decay").fill("0.001")

    # The server's: momentum must stay below 1 (the page allows 1); the error sits by the field.
    tab.get_by_label("momentum").fill("1")
    tab.get_by_role("button", name="Submit the run").click()
    error = tab.locator("#error-momentum")
    error.wait_for()
    assert "less than 1" in error.inner_text()
    assert tab.locator(".field.invalid").count() == 1
    assert tab.locator(".field.invalid #momentum").count() == 1
    assert processes.api("GET", "/runs").json()["total"] == 0
    assert tab.get_by_label("name").input_value() == "from the form"  # the input is kept

    tab.get_by_label("momentum").fill("0.9")
    tab.get_by_role("button", name="Submit the run").click()
    tab.wait_for_url("**/ui/runs/1")
    assert "queued" in tab.locator(".summary").inner_text()
    tab.evaluate("window.notReloaded = true")
    processes.start_worker()
    # Live: the page follows the run to its end without reloading.
    tab.locator(".summary .badge.succeeded").wait_for(timeout=120_000)
    assert tab.evaluate("window.notReloaded") is True
    assert tab.locator("#epochs-done").inner_text() == "3"
    images_load(tab, 8)
    run = processes.api("GET", "/runs/1").json()
    assert run["spec"]["momentum"] == 0.9 and run["spec"]["weight_decay"] == 0.001
    assert run["name"] == "from the form"
    # Its copy with another weight decay: the same spec, prefilled, weight decay focused.
    tab.get_by_role("link", name="Submit a copy with another weight decay").first.click()
    assert tab.get_by_label("hidden_sizes").input_value() == "32"
    assert tab.evaluate("document.activeElement.id") == "weight_decay"
    watch.check(expected_errors=(f"422 {processes.url}/ui/runs/new",))


@pytest.fixture
def guarded(tmp_path: Path, db_url: str) -> Iterator[Processes]:
    procs = Processes(tmp_path, lease_seconds="2", database_url=db_url, api_token=TOKEN)
    yield procs
    procs.close()


def test_with_a_token_the_ui_logs_in_once_and_refuses_cross_site_writes(guarded, browser):
    guarded.start_server()
    guarded.start_worker()
    run_id = submit(guarded, name="guarded")
    guarded.wait_finished(run_id)
    context = browser.new_context()
    tab = context.new_page()
    watch = Watch(guarded)
    watch.attach(tab)

    tab.goto(f"{guarded.url}/ui/runs/{run_id}")
    assert "/ui/login?next=" in tab.url
    tab.get_by_label("API token").fill("wrong")
    tab.get_by_role("button", name="Log in").click()
    assert "not the token" in tab.locator(".error").inner_text()
    tab.get_by_label("API token").fill(TOKEN)
    tab.get_by_role("button", name="Log in").click()
    tab.wait_for_url(f"**/ui/runs/{run_id}")
    assert TOKEN not in tab.url
    images_load(tab, 8)
    (cookie,) = context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["value"] == TOKEN
    tab.goto(f"{guarded.url}/ui/compare?runs={run_id},{submit(guarded)}")
    watch.check(expected_errors=(f"401 {guarded.url}/ui/login",))

    # A page elsewhere posting a form to the server: the browser keeps the cookie to itself.
    evil = "http://evil.invalid/"
    form = (
        f'<form method="post" action="{guarded.url}/ui/runs/new">'
        '<input name="dataset" value="synthetic"></form>'
        "<script>document.forms[0].submit()</script>"
    )
    tab.route(evil, lambda route: route.fulfill(body=form, content_type="text/html"))
    with tab.expect_response(f"{guarded.url}/ui/runs/new") as answer:
        tab.goto(evil)
    assert answer.value.status == 401
    # The cookie without an Origin naming the server opens no write either.
    cookies = {"decaylab_token": TOKEN}
    plain = httpx.post(f"{guarded.url}/runs/{run_id}/cancel", cookies=cookies)
    assert plain.status_code == 401
    other = httpx.post(
        f"{guarded.url}/ui/runs/{run_id}/delete",
        cookies=cookies,
        headers={"Origin": "http://evil.invalid"},
    )
    assert other.status_code == 401
    assert guarded.api("GET", "/runs").json()["total"] == 2
    context.close()


# Every frame, each figure that has shown a picture once must still show one (complete, with a
# natural width): a live update never leaves an empty frame. Also collects the URLs shown.
WATCH_FIGURES = """() => {
  window.blank = [];
  window.shownSrcs = new Set();
  const seen = new Set();
  const sample = () => {
    for (const img of document.querySelectorAll("img[data-figure]")) {
      if (img.complete && img.naturalWidth > 0) {
        seen.add(img.dataset.figure);
        window.shownSrcs.add(img.getAttribute("src"));
      } else if (seen.has(img.dataset.figure)) {
        window.blank.push(img.dataset.figure);
      }
    }
    requestAnimationFrame(sample);
  };
  requestAnimationFrame(sample);
}"""
# Each figure's PNG has the pixels of its box on the screen (device pixels), give or take one.
SIZES_MATCH = """() => Array.from(document.querySelectorAll("img[data-figure]")).every(img =>
  img.complete && img.naturalWidth > 0 &&
  Math.abs(img.naturalWidth - img.clientWidth * devicePixelRatio) <= 1 &&
  Math.abs(img.naturalHeight - img.clientHeight * devicePixelRatio) <= 1)"""


def test_a_training_runs_figures_never_go_blank_and_are_drawn_at_their_shown_size(
    processes, browser
):
    processes.start_server()
    processes.start_worker()
    # Long enough that the page sees several of its epochs on a fast machine too.
    run_id = submit(processes, epochs=30, train_size=4096, test_size=128)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=2)
    tab = context.new_page()
    tab.set_default_timeout(600_000)  # a busy machine draws a figure in seconds
    watch = Watch(processes)
    watch.attach(tab)
    processes.wait_for_run(run_id, lambda r: r["epochs_done"] >= 1, timeout=300)
    tab.goto(f"{processes.url}/ui/runs/{run_id}", wait_until="domcontentloaded")
    tab.wait_for_function(IMAGES_LOADED + " && document.images.length == 8")
    tab.evaluate(WATCH_FIGURES)
    tab.locator(".summary .badge.succeeded").wait_for()
    tab.wait_for_function(SIZES_MATCH)
    assert tab.evaluate("window.blank") == []
    # The live part was replaced as epochs came: each figure showed more than one version.
    versions = tab.evaluate("Array.from(window.shownSrcs).filter(s => s.includes('/metrics?'))")
    assert len(versions) > 2, versions
    widths = "Array.from(document.querySelectorAll('img[data-figure]'), i => i.naturalWidth)"
    sizes = tab.evaluate(widths)
    assert min(sizes) > 1000  # at least two columns of about 600 px, at twice the pixels
    # A narrow window puts the figures in one column of another width: asked for again.
    tab.set_viewport_size({"width": 900, "height": 1000})
    tab.wait_for_function(SIZES_MATCH)
    assert all(w != before for w, before in zip(tab.evaluate(widths), sizes, strict=True))

    # The new-sweep form, on a server that has trained epochs, says about how long its grid
    # trains (the prefill: 2 weight decays × 3 seeds of 10 epochs).
    tab.goto(f"{processes.url}/ui/sweeps/new")
    told = tab.locator("#grid-size").inner_text()
    assert told.startswith("Submitting queues 6 runs, 60 epochs in all: about "), told
    watch.check()
    context.close()


def test_the_runs_list_fits_its_column_and_folds_a_sweeps_members_under_it(processes, page):
    tab, watch = page
    processes.start_server()  # no worker: the runs wait in the queue
    alone = submit(processes, name="a run of its own", hidden_sizes=[512, 512, 512])
    body = {
        "name": "decay by width",
        "base": {"dataset": "synthetic", "train_size": 512, "test_size": 256},
        "grid": {"weight_decay": [0, 0.001], "hidden_sizes": [[512, 512, 512], [32]]},
    }
    sweep = processes.api("POST", "/sweeps", json=body).json()
    for width in (1280, 1920):
        tab.set_viewport_size({"width": width, "height": 900})
        tab.goto(f"{processes.url}/ui/runs")
        wrap = tab.locator(".table-wrap")
        assert wrap.evaluate("w => w.scrollWidth <= w.clientWidth"), width
        headers = tab.locator("table.runs thead th").all_inner_texts()
        assert [h.strip() for h in headers].count("epochs") == 1, headers
        # The sweep's members fold under its row; the run of its own stays in view.
        members = tab.locator(f"tbody#sweep-{sweep['id']} tr.member")
        assert members.count() == 4
        assert not any(m.is_visible() for m in members.all())
        assert tab.locator(f'tr[data-run="{alone}"]').is_visible()
        fold = tab.get_by_role("button", name="▸ show its runs")
        assert fold.get_attribute("aria-expanded") == "false"
        fold.click()
        assert all(m.is_visible() for m in members.all())
        assert wrap.evaluate("w => w.scrollWidth <= w.clientWidth"), width
        # Hidden sizes ("512, 512, 512") on one line: the text makes one line box.
        lines = tab.locator("table.runs td.spec").evaluate_all(
            "cells => cells.map(c => { const r = document.createRange(); r.selectNodeContents(c);"
            " return r.getClientRects().length; })"
        )
        assert lines and set(lines) == {1}, lines
        assert (
            tab.get_by_role("button", name="▾ hide its runs").get_attribute("aria-expanded")
            == "true"
        )

    # The new-sweep form tells what a click queues before it is made, and follows the edits.
    tab.goto(f"{processes.url}/ui/sweeps/new")
    told = tab.locator("#grid-size")
    assert told.inner_text() == (
        "Submitting queues 6 runs, 60 epochs in all. "
        "(No time estimate yet: this server has not trained an epoch.)"
    )
    tab.get_by_label("values of grid field 2").fill("0, 1, 2, 3, 4")
    tab.get_by_label("epochs", exact=True).fill("50")
    assert told.inner_text().startswith("Submitting queues 10 runs, 500 epochs in all.")
    watch.check()
