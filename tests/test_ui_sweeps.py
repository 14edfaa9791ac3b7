"""The sweep pages in a real Chromium against real server and worker processes: the new-sweep
form refuses a bad grid value beside its row and stores nothing; a good 2×2 sweep is followed
live to its end, every image loads and the groups table equals the JSON view."""

import pytest
from test_ui import Watch, images_load, page  # noqa: F401 (the page fixture)

pytestmark = pytest.mark.slow


def test_a_sweep_from_the_form_followed_live_to_its_end(processes, page):  # noqa: F811
    tab, watch = page
    processes.start_server()
    tab.goto(processes.url + "/ui/runs")
    tab.get_by_role("link", name="Sweeps", exact=True).click()
    tab.wait_for_url("**/ui/sweeps")
    assert "No sweep has been submitted yet" in tab.locator("main").inner_text()
    tab.get_by_role("link", name="New sweep").first.click()
    tab.wait_for_url("**/ui/sweeps/new")
    tab.get_by_label("sweep name").fill("ui 2x2")
    tab.get_by_label("dataset", exact=True).select_option("synthetic")
    for field, value in (("epochs", "3"), ("hidden_sizes", "32"), ("train_size", "512")):
        tab.get_by_label(field, exact=True).fill(value)
    tab.get_by_label("test_size", exact=True).fill("256")
    tab.get_by_label("grid field 1", exact=True).select_option("weight_decay")
    tab.get_by_label("values of grid field 1").fill("0, -0.001")
    tab.get_by_label("grid field 2", exact=True).select_option("seed")
    tab.get_by_label("values of grid field 2").fill("0, 1")

    # The server refuses the second weight decay: the error sits beside its grid row.
    tab.get_by_role("button", name="Submit the sweep").click()
    error = tab.locator('.grid-row[data-row="0"] .error')
    error.wait_for()
    assert (
        "weight_decay[1] = -0.001: " in error.inner_text()
        and "greater than or equal" in error.inner_text()
    )
    assert tab.locator(".invalid").count() == 1
    assert processes.api("GET", "/sweeps").json()["total"] == 0
    assert processes.api("GET", "/runs").json()["total"] == 0
    assert tab.get_by_label("sweep name").input_value() == "ui 2x2"  # the input is kept

    tab.get_by_label("values of grid field 1").fill("0, 0.001")
    tab.get_by_role("button", name="Submit the sweep").click()
    tab.wait_for_url("**/ui/sweeps/1")
    assert "queued" in tab.locator(".summary").inner_text()
    assert tab.locator("#members-table tbody tr").count() == 4
    tab.evaluate("window.notReloaded = true")
    processes.start_worker()
    # Live: the page follows the members to the end without reloading.
    tab.locator(".summary .badge.succeeded").wait_for(timeout=180_000)
    assert tab.evaluate("window.notReloaded") is True
    assert tab.locator("#runs-finished").inner_text() == "4"
    assert tab.locator("#members-table .badge.succeeded").count() == 4
    images_load(tab, 4)
    # The groups' means and intervals at the last epoch are the JSON view's, to the last digit.
    view = processes.api("GET", "/sweeps/1/constancy", params={"scope": "all"}).json()
    expected = [
        x
        for result in view["results"]
        for g in result["groups"]
        # The interval as shown: cut to the percentages possible.
        for x in (g["mean"][-1], max(g["ci_low"][-1], 0), min(g["ci_high"][-1], 100))
    ]
    shown = tab.locator("#groups-table .pct").evaluate_all(
        "cells => cells.map(c => Number(c.dataset.value))"
    )
    assert shown == expected

    # A layer and a tolerance chosen in the page.
    tab.get_by_label("Tolerance").select_option("0.0")
    tab.wait_for_url("**tol=0.0**")
    tab.get_by_label("Layers").select_option("last2")
    tab.wait_for_url("**scope=last2**")
    images_load(tab, 4)
    assert tab.locator("#groups-table tbody.group").count() == 1

    # A member's page links back to its sweep.
    first = processes.api("GET", "/sweeps/1").json()["runs"][0]["id"]
    tab.locator(f'#members-table tr[data-run="{first}"] a').first.click()
    tab.wait_for_url(f"**/ui/runs/{first}")
    tab.locator("#sweep-link").click()
    tab.wait_for_url("**/ui/sweeps/1")

    # Deleting asks first; saying no changes nothing.
    delete = tab.get_by_role("button", name="Delete sweep")
    tab.once("dialog", lambda dialog: dialog.dismiss())
    delete.click()
    assert processes.api("GET", "/sweeps/1").status_code == 200
    tab.once("dialog", lambda dialog: dialog.accept())
    delete.click()
    tab.wait_for_url("**/ui/sweeps")
    assert processes.api("GET", "/sweeps").json()["total"] == 0
    assert processes.api("GET", "/runs").json()["total"] == 0
    watch.check(expected_errors=(f"422 {processes.url}/ui/sweeps/new",))
