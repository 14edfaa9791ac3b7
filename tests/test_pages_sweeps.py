"""The sweep pages over TestClient: list, sweep page numbers equal to the JSON views, the
new-sweep form's errors beside their fields with nothing stored, cancel and delete."""

import random
import re

from conftest import json_links
from sqlalchemy import func, select
from test_sweeps import BASE, train_all

from server.store.models import Run, Sweep

HTML = {"Accept": "text/html"}


def stored(db) -> tuple[int, int]:
    with db.reader() as session:
        runs = session.scalar(select(func.count()).select_from(Run))
        sweeps = session.scalar(select(func.count()).select_from(Sweep))
    return runs, sweeps


def post_sweep(client, grid, **more) -> dict:
    response = client.post("/sweeps", json={"name": "s", "base": BASE, "grid": grid, **more})
    assert response.status_code == 201, response.text
    return response.json()


def sweep_form(**changes: str) -> dict[str, str | list[str]]:
    """The new-sweep form as a browser sends it: the base, then the grid's rows."""
    fields = {"name": "ui sweep", "priority": "0", "dataset": "synthetic", "epochs": "4"}
    fields |= {"weight_decay": "0", "learning_rate": "0.01", "momentum": "0.9"}
    fields |= {"batch_size": "128", "hidden_sizes": "8", "optimizer": "sgd"}
    fields |= {"tolerances": "0, 0.01, 0.1", "train_size": "512", "test_size": "256"}
    fields |= {"seed": "0", "basis": "previous", "dtype": "float32"}
    grid = [("weight_decay", "0, 0.001"), ("seed", "0, 1"), ("", ""), ("", "")]
    fields |= {k: v for k, v in changes.items() if not k.startswith("grid")}
    for i in range(4):
        if f"grid{i}" in changes:
            grid[i] = tuple(changes[f"grid{i}"].split("=", 1))  # type: ignore[assignment]
    return fields | {"grid_field": [f for f, _ in grid], "grid_values": [v for _, v in grid]}


def test_the_nav_links_to_sweeps_and_a_member_links_to_its_sweep(client):
    sweep = post_sweep(client, {"weight_decay": [0, 0.001]})
    page = client.get("/ui/runs").text
    assert 'href="/ui/sweeps"' in page
    member = client.get(f"/ui/runs/{sweep['runs'][0]['id']}").text
    assert f'href="/ui/sweeps/{sweep["id"]}"' in member


def test_the_list_shows_status_progress_grid_and_pages(client, db):
    for i in range(3):
        post_sweep(client, {"weight_decay": [0, 0.001], "seed": [i, i + 10]}, name=f"s{i}")
    train_all(db, random.Random(0), epochs={1: 4, 2: 4, 3: 4, 4: 4})
    page = client.get("/ui/sweeps", params={"per_page": 2}).text
    assert re.findall(r'<tr data-sweep="(\d+)"', page) == ["3", "2"]
    assert "Sweeps 1–2 of 3" in page and "page 1 of 2" in page
    assert "weight decay: 0, 0.001" in page and "seed: 2, 12" in page
    last = client.get("/ui/sweeps", params={"per_page": 2, "page": 2}).text
    assert re.findall(r'<tr data-sweep="(\d+)"', last) == ["1"]
    # Sweep 1: every member trained by the pretend worker.
    assert 'class="badge succeeded"' in last and "4 / 4</span>" in last
    assert "16 / 16 epochs" in last
    assert client.get("/ui/sweeps", params={"per_page": 10**6}).status_code == 422


def test_the_sweep_page_shows_the_json_views_numbers_and_figures(client, db):
    sweep = post_sweep(client, {"weight_decay": [0, 0.001], "seed": [0, 1, 2]})
    train_all(db, random.Random(1))
    page = client.get(f"/ui/sweeps/{sweep['id']}").text
    view = client.get(f"/sweeps/{sweep['id']}/constancy", params={"scope": "all"}).json()
    table = page[page.index('id="groups-table"') :]
    values = [float(v) for v in re.findall(r'data-value="([^"]+)"', table.split("</table>")[0])]
    expected, cut = [], False
    for result in view["results"]:
        for g in result["groups"]:
            low, high = g["ci_low"][-1], g["ci_high"][-1]
            # Shown cut to the percentages possible, with a note; the JSON keeps the t interval.
            expected += [g["mean"][-1], max(low, 0), min(high, 100)]
            cut = cut or low < 0 or high > 100
    assert values == expected  # exactly: repr of the same floats
    assert cut and 'id="cut-note"' in page  # three runs of random percentages: wide intervals
    # Every member is linked with its status; every figure and download answers.
    for run in sweep["runs"]:
        assert f'<a href="/ui/runs/{run["id"]}">' in page
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == 4
    for src in srcs:
        png = client.get(src.replace("&amp;", "&"))
        assert png.headers["content-type"] == "image/png", src
    downloads = re.findall(r'href="(/sweeps/[^"]+format=(\w+))"', page)
    assert {fmt for _, fmt in downloads} == {"json", "png", "csv"} and len(downloads) == 12
    for href, fmt in downloads:
        answer = client.get(href.replace("&amp;", "&"))
        assert answer.status_code == 200 and fmt in answer.headers["content-type"], href
    # A tolerance and a layer chosen in the page: the table and figures follow.
    one = client.get(f"/ui/sweeps/{sweep['id']}", params={"tol": 0.01, "scope": 1}).text
    # As JSON: the sweep and each view its figures show, at the page's choices they take.
    sid = sweep["id"]
    assert json_links(client, one) == [
        f"/sweeps/{sid}",
        f"/sweeps/{sid}/constancy?scope=1&tol=0.01",
        f"/sweeps/{sid}/metrics",
        f"/sweeps/{sid}/summary?scope=1&tol=0.01",
    ]
    assert one.count('<tbody class="group"') == 1 and "scope=1&amp;tol=0.01" in one
    view = client.get(f"/sweeps/{sweep['id']}/constancy", params={"scope": 1, "tol": 0.01})
    mean = view.json()["groups"][1]["mean"][-1]
    assert f'data-value="{mean}"' in one
    assert 'data-live="false"' in page
    assert client.get(f"/ui/sweeps/{sweep['id']}", params={"tol": 0.5}).status_code == 404
    assert client.get("/ui/sweeps/99", headers=HTML).status_code == 404


def test_a_queued_sweep_updates_itself_and_says_no_epoch_yet(client):
    sweep = post_sweep(client, {"seed": [0, 1]})
    page = client.get(f"/ui/sweeps/{sweep['id']}").text
    assert 'data-live="true"' in page and 'id="no-epochs"' in page and "<img" not in page
    live = client.get(f"/ui/sweeps/{sweep['id']}", params={"part": "live"})
    assert live.text.lstrip().startswith('<div id="live"')
    again = client.get(
        f"/ui/sweeps/{sweep['id']}",
        params={"part": "live"},
        headers={"If-None-Match": live.headers["etag"]},
    )
    assert again.status_code == 304


def test_the_form_stores_a_good_sweep_and_refuses_a_bad_one_beside_its_field(client, db):
    form = client.get("/ui/sweeps/new").text
    assert 'name="grid_field"' in form and 'value="0, 0.001"' in form
    # A grid value RunSpec refuses: beside its grid row, nothing stored.
    bad = client.post("/ui/sweeps/new", data=sweep_form(grid0="weight_decay=0, -1"))
    assert bad.status_code == 422
    assert 'id="error-grid-0"' in bad.text and "weight_decay[1] = -1: " in bad.text
    assert 'value="0, -1"' in bad.text  # the texts are shown again
    # A base field's error beside the base field; a grid row's own parse error beside the row.
    bad = client.post("/ui/sweeps/new", data=sweep_form(epochs="0"))
    assert 'id="error-epochs"' in bad.text and "greater than or equal to 1" in bad.text
    bad = client.post("/ui/sweeps/new", data=sweep_form(epochs="x", grid1="seed=0, x"))
    assert 'id="error-epochs"' in bad.text and 'id="error-grid-1"' in bad.text
    assert "seed[1] = x: &#39;x&#39; is not a whole number" in bad.text
    # Every error at once, one numbering (0-based, as the API's loc): the form's own and the
    # API's, repeats and bounds (issue 20, item 5).
    bad = client.post(
        "/ui/sweeps/new",
        data=sweep_form(grid0="weight_decay=0, -1, abc", grid1="seed=0, 0", epochs="0"),
    )
    assert "weight_decay[1] = -1: Input should be greater than or equal to 0" in bad.text
    assert "weight_decay[2] = abc: &#39;abc&#39; is not a number" in bad.text
    assert "seed[1] = 0: repeats seed[0]" in bad.text
    assert 'id="error-epochs"' in bad.text
    # Too many members: the grid as a whole.
    bad = client.post(
        "/ui/sweeps/new", data=sweep_form(grid1="seed=" + ",".join(map(str, range(200))))
    )
    assert 'id="error-grid"' in bad.text and "DECAYLAB_MAX_SWEEP_RUNS" in bad.text
    bad = client.post("/ui/sweeps/new", data=sweep_form(grid1="weight_decay=1"))
    assert "already varied in another row" in bad.text
    assert stored(db) == (0, 0)

    good = client.post(
        "/ui/sweeps/new", data=sweep_form(grid2="hidden_sizes=8; 8, 4"), follow_redirects=False
    )
    assert good.status_code == 303 and good.headers["location"] == "/ui/sweeps/1"
    sweep = client.get("/sweeps/1").json()
    assert sweep["name"] == "ui sweep"
    assert sweep["grid"] == {
        "weight_decay": [0.0, 0.001],
        "seed": [0, 1],
        "hidden_sizes": [[8], [8, 4]],
    }
    assert sweep["base"]["epochs"] == 4 and "weight_decay" not in sweep["base"]
    assert len(sweep["runs"]) == 8
    # A copy of it prefills the form.
    copy = client.get("/ui/sweeps/new", params={"from": 1}).text
    assert 'value="8; 8, 4"' in copy and 'value="ui sweep"' in copy


def test_cancel_and_delete_from_the_pages(client, db):
    sweep = post_sweep(client, {"seed": [0, 1]})
    page = client.get(f"/ui/sweeps/{sweep['id']}").text
    assert "Cancel sweep" in page and "data-confirm=" in page
    done = client.post(f"/ui/sweeps/{sweep['id']}/cancel", follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/ui/sweeps/{sweep['id']}"
    assert client.get(f"/sweeps/{sweep['id']}").json()["status"] == "cancelled"
    # Another site's page cannot delete it through a visitor's browser.
    evil = client.post(
        f"/ui/sweeps/{sweep['id']}/delete", headers={"Origin": "https://evil.example"}
    )
    assert evil.status_code == 403
    gone = client.post(
        f"/ui/sweeps/{sweep['id']}/delete",
        data={"next": f"/ui/sweeps/{sweep['id']}"},
        follow_redirects=False,
    )
    assert gone.status_code == 303 and gone.headers["location"] == "/ui/sweeps"
    assert stored(db) == (0, 0)
