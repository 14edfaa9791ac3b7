"""The browser UI's pages over TestClient: answers, redirects, content, paging and guards."""

import html
import re
from collections.abc import Iterator

import pytest
from conftest import json_links
from fastapi.testclient import TestClient
from sqlalchemy import event

from server.api.app import create_app
from server.core.schemas import RunSpec, RunStatus
from server.core.settings import Settings
from server.store import crud, jobs

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
TOKEN = "pages-token"


def ids_listed(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'name="runs" value="(\d+)"', html)]


def form(tiny_spec, **changes: str) -> dict[str, str]:
    """The new-run form filled in as a browser sends it (unticked checkboxes are absent)."""
    spec = RunSpec.model_validate(tiny_spec()).model_dump()
    sent = {k: v for k, v in spec.items() if v is not None and v is not False}
    return {
        k: ", ".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in sent.items()
    } | changes


def test_root_sends_browsers_to_the_list_and_gives_other_clients_json(client):
    page = client.get("/", headers=HTML, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/ui/runs"
    assert page.headers["vary"] == "Accept"
    answer = client.get("/")  # curl: */*
    assert answer.json()["links"]["ui"] == "/ui/runs"
    assert client.get("/ui/static/ui.js").headers["content-type"].startswith("text/javascript")


def test_the_list_pages_filters_and_sorts_on_the_server(client, play, db):
    for i in range(12):
        status = RunStatus.failed if i % 4 == 0 else RunStatus.succeeded
        play({"name": f"run-{i}", "weight_decay": i / 1000, "epochs": 2}, 2, finish=status, seed=i)
    with db.write() as session:
        crud.create_run(session, RunSpec(name="queued one", weight_decay=0.5, momentum=0.5))
    page = client.get("/ui/runs", params={"per_page": 5, "page": 2})
    assert page.status_code == 200
    assert ids_listed(page.text) == [8, 7, 6, 5, 4]
    assert "Runs 6–10 of 13" in page.text and "page 2 of 3" in page.text
    # Spec fields that differ between the runs shown get a column; weight decay always has one.
    assert '<th scope="col">momentum</th>' not in page.text
    first = client.get("/ui/runs", params={"per_page": 5}).text  # run 13's momentum is 0.5
    assert '<th scope="col">momentum</th>' in first and ">0.5</td>" in first
    failed = client.get("/ui/runs", params={"status": "failed"}).text
    assert ids_listed(failed) == [9, 5, 1] and "failed (3)" in failed
    named = client.get("/ui/runs", params={"name": "RUN-1"}).text
    assert ids_listed(named) == [12, 11, 2]  # run-11, run-10, run-1
    by_decay = client.get("/ui/runs", params={"sort": "weight_decay", "order": "asc"}).text
    assert ids_listed(by_decay)[:3] == [1, 2, 3] and ids_listed(by_decay)[-1] == 13
    by_accuracy = client.get("/ui/runs", params={"sort": "test_accuracy", "order": "desc"}).text
    assert ids_listed(by_accuracy)[-1] == 13  # no epoch yet: last
    assert client.get("/ui/runs", params={"sort": "nonsense"}).status_code == 422
    assert client.get("/ui/runs", params={"per_page": 10**6}).status_code == 422


def test_the_list_reads_a_page_in_the_same_few_queries_whatever_its_size(client, play, settings):
    for i in range(30):
        play({"name": f"r{i}", "epochs": 1}, 1, seed=i)
    statements: list[str] = []
    engine = client.app.state.database.engine
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    client.get("/ui/runs", params={"per_page": 3})
    few = len(statements)
    statements.clear()
    page = client.get("/ui/runs", params={"per_page": 25})
    assert len(statements) == few
    # The last test accuracy of every run on the page, as its metrics view has it.
    accuracy = client.get("/runs/30/metrics").json()["test_accuracy"][-1]
    assert f"{100 * accuracy:.1f}%" in page.text


def test_the_run_page_shows_the_json_views_numbers_and_figures(client, play):
    played = play({"name": "a", "epochs": 3}, 3)
    play({"name": "b", "epochs": 3, "weight_decay": 0.001}, 3, seed=1)
    play({"name": "c", "epochs": 3, "weight_decay": 0.001, "seed": 7}, 3, seed=2)
    page = client.get(f"/ui/runs/{played.run_id}").text
    view = client.get(f"/runs/{played.run_id}/constancy").json()
    for result in view["results"]:
        for value in [la["percent"][-1] for la in result["layers"]] + [result["mean"][-1]]:
            assert f'data-value="{value}"' in page
    for src in re.findall(r'<img src="([^"]+)"', page):
        png = client.get(src.replace("&amp;", "&"))
        assert png.headers["content-type"] == "image/png", src
    assert len(re.findall(r"<img data-figure", page)) == 6
    # Downloads of every view in every format the API answers, and every one answers.
    downloads = re.findall(r'href="(/runs/[^"]+format=(\w+))"', page)
    assert {fmt for _, fmt in downloads} == {"json", "png", "csv"} and len(downloads) == 18
    for href, fmt in downloads:
        answer = client.get(href.replace("&amp;", "&"))
        assert answer.status_code == 200 and fmt in answer.headers["content-type"], href
    # Run 2 differs in weight decay only, run 3 in two fields.
    assert 'href="/ui/compare?runs=1,2"' in page and "runs=1,3" not in page
    assert client.get("/ui/runs/99", headers=HTML).status_code == 404
    # Stored without dead units and the spectrum: the section says so, no broken image.
    assert 'id="h-why"' in page and 'id="why-missing"' in page
    assert "trained before decaylab recorded" in page and "/units" not in page
    # As JSON: the run and each view its figures show, from the registry, each answering.
    assert json_links(client, page) == [
        f"/runs/{played.run_id}",
        *(f"/runs/{played.run_id}/{name}" for name in ("metrics", "constancy", "weights")),
    ]


def test_the_run_page_shows_why_weights_stay_constant(client, play, tiny_spec):
    played = play(
        tiny_spec(hidden_sizes=[32, 16]), 3, parameters=(96, 32, 48), mechanism=True, seed=3
    )
    run_id = played.run_id
    page = client.get(f"/ui/runs/{run_id}").text
    assert 'id="h-why"' in page and 'id="why-missing"' not in page
    units = client.get(f"/runs/{run_id}/units").json()
    # The last epoch's numbers, as the JSON view has them.
    why = page[page.index('id="h-why"') :]
    hidden, weights = why.split('id="explained-table"')
    row = r'<tr data-layer="(\d+)">.*?data-value="(\d+)"'
    dead = [tuple(map(int, r)) for r in re.findall(row, hidden, re.S)]
    assert dead == [(h["layer"], h["dead"][-1]) for h in units["hidden"]] and len(dead) == 2
    explained = [
        tuple(map(int, r)) for r in re.findall(row + r'.*?data-value="(\d+)"', weights, re.S)
    ]
    assert explained == [
        (w["layer"], w["constant"][-1], w["explained"][-1]) for w in units["weights"]
    ]
    assert len(explained) == 3 and f"Dead units in epoch {units['epochs'][-1]}" in why
    # The units figure and the spectrum heatmap, each with its three downloads, all answering.
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == 8
    assert [s.partition("?")[0] for s in srcs[-2:]] == [
        f"/runs/{run_id}/units",
        f"/runs/{run_id}/spectrum",
    ]
    for src in srcs[-2:]:
        png = client.get(src.replace("&amp;", "&"))
        assert png.status_code == 200 and png.headers["content-type"] == "image/png", src
    downloads = re.findall(r'href="(/runs/\d+/(?:units|spectrum)\?format=(\w+))"', page)
    assert sorted(fmt for _, fmt in downloads) == ["csv", "csv", "json", "json", "png", "png"]
    for href, fmt in downloads:
        answer = client.get(href)
        assert answer.status_code == 200 and fmt in answer.headers["content-type"], href
    # As JSON: the why-section's views too, once the run has them.
    assert json_links(client, page)[-2:] == [f"/runs/{run_id}/units", f"/runs/{run_id}/spectrum"]
    # The live part carries the section too (a new epoch updates it).
    live = client.get(f"/ui/runs/{run_id}", params={"part": "live"}).text
    assert 'id="dead-units-table"' in live and f"/runs/{run_id}/spectrum?format=png" in live


def test_the_live_part_answers_304_until_the_run_moves_on(client, play, db):
    played = play({"epochs": 3}, 1, finish=None)
    first = client.get(f"/ui/runs/{played.run_id}", params={"part": "live"})
    assert 'data-live="true"' in first.text and "<html" not in first.text
    etag = first.headers["etag"]
    again = client.get(
        f"/ui/runs/{played.run_id}", params={"part": "live"}, headers={"If-None-Match": etag}
    )
    assert again.status_code == 304
    with db.write() as session:
        jobs.finish_run(session, played.lease, RunStatus.succeeded)
    moved = client.get(
        f"/ui/runs/{played.run_id}", params={"part": "live"}, headers={"If-None-Match": etag}
    )
    assert moved.status_code == 200 and 'data-live="false"' in moved.text


def test_compare_page_table_and_figures(client, play):
    a = play({"name": "a", "epochs": 2}, 2).run_id
    b = play({"name": "b", "epochs": 2, "weight_decay": 0.001}, 2, seed=1).run_id
    page = client.get("/ui/compare", params={"runs": f"{a},{b}", "tol": 0.01, "scope": "1"})
    assert page.status_code == 200
    assert "weight decay 0.001" in page.text  # the differing field heads its run's column
    srcs = re.findall(r'<img src="([^"]+)"', page.text)
    assert len(srcs) == 1 and "scope=1" in srcs[0] and "tol=0.01" in srcs[0]
    joint = client.get("/compare", params={"runs": f"{a},{b}", "tol": 0.01, "scope": "last2"})
    for run in joint.json()["runs"]:
        assert f'data-value="{run["percent"][-1]}"' in page.text
    # Stored without the spectrum: the page says so instead of a broken image.
    assert "/compare/spectrum" not in page.text
    assert re.search(r'id="spectrum-missing">[^<]*runs 1, 2\s+were trained before', page.text)
    assert client.get("/ui/compare", params={"runs": a}).status_code == 422
    assert client.get("/ui/compare", params={"runs": f"{a},{b}", "tol": 0.5}).status_code == 404
    assert client.get("/ui/compare", params={"runs": f"{a},99"}).status_code == 404


def test_the_form_has_every_field_and_its_rule_and_refuses_by_field(client, tiny_spec):
    page = client.get("/ui/runs/new").text
    for name in RunSpec.model_fields:
        assert f'name="{name}"' in page
    assert 'id="epochs" name="epochs" value="50"' in page and 'max="1000"' in page
    refused = client.post("/ui/runs/new", data=form(tiny_spec, momentum="1", hidden_sizes="3x"))
    assert refused.status_code == 422
    assert re.search(r'id="error-momentum">[^<]*less than 1', refused.text)
    assert re.search(r'id="error-hidden_sizes">[^<]*not a whole number', refused.text)
    assert 'value="3x"' in refused.text  # what was typed stays
    over = client.post("/ui/runs/new", data=form(tiny_spec, hidden_sizes="8192, 8192, 8192"))
    assert over.status_code == 422 and "DECAYLAB_MAX_" in over.text  # the resource limits too
    assert client.get("/runs").json()["total"] == 0
    made = client.post("/ui/runs/new", data=form(tiny_spec, name="ok"), follow_redirects=False)
    assert made.status_code == 303 and made.headers["location"] == "/ui/runs/1"
    run = client.get("/runs/1").json()
    assert run["spec"] == RunSpec.model_validate(tiny_spec(name="ok")).model_dump()
    copy = client.get("/ui/runs/new", params={"from": 1, "focus": "weight_decay"}).text
    assert 'name="hidden_sizes" value="32"' in copy and 'name="train_size" value="512"' in copy
    assert re.search(r'id="weight_decay"[^>]*autofocus', copy)


def test_cancel_and_delete_are_posts_and_refused_from_another_origin(client, tiny_spec):
    client.post("/runs", json=tiny_spec())
    assert client.get("/ui/runs/1/cancel").status_code in (404, 405)
    elsewhere = {"Origin": "http://evil.example"}
    assert client.post("/ui/runs/1/cancel", headers=elsewhere).status_code == 403
    assert client.post("/runs/1/cancel", headers=elsewhere).status_code == 403
    assert client.post("/ui/runs/new", data=form(tiny_spec), headers=elsewhere).status_code == 403
    here = {"Origin": "http://testserver"}
    done = client.post("/ui/runs/1/cancel", data={"next": "/ui/runs"}, headers=here,
                       follow_redirects=False)  # fmt: skip
    assert done.status_code == 303 and client.get("/runs/1").json()["status"] == "cancelled"
    # A finished run cannot be cancelled: a page says so.
    assert client.post("/ui/runs/1/cancel").status_code == 409
    gone = client.post("/ui/runs/1/delete", data={"next": "https://evil.example/"},
                       follow_redirects=False)  # fmt: skip
    assert gone.headers["location"] == "/ui/runs"  # no redirect off the server
    assert client.get("/runs").json()["total"] == 0


def test_a_delete_goes_back_to_the_page_it_came_from_unless_that_page_is_gone(client, tiny_spec):
    for _ in range(12):
        client.post("/runs", json=tiny_spec())
    back = [  # (the run deleted, the page its button was on, where the answer goes)
        (1, "/ui/runs/12", "/ui/runs/12"),  # 1 is a prefix of 12: run 12's page is not gone
        (2, "/ui/runs?status=queued", "/ui/runs?status=queued"),
        (3, "/ui/runs/3?part=live", "/ui/runs"),
        (4, "/ui/runs/4/", "/ui/runs"),
    ]
    for run_id, came_from, location in back:
        gone = client.post(f"/ui/runs/{run_id}/delete", data={"next": came_from},
                           follow_redirects=False)  # fmt: skip
        assert gone.status_code == 303 and gone.headers["location"] == location, came_from
    assert client.get("/runs").json()["total"] == 8


@pytest.fixture
def guarded(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"api_token": TOKEN}))) as client:
        yield client


def test_with_a_token_pages_need_the_login_cookie(guarded):
    to_login = guarded.get("/ui/runs?status=queued", headers=HTML, follow_redirects=False)
    assert to_login.status_code == 303
    assert to_login.headers["location"] == "/ui/login?next=/ui/runs%3Fstatus%3Dqueued"
    assert guarded.get("/ui/runs").status_code == 401  # not a browser: the API's answer
    assert guarded.get("/ui/login").status_code == 200
    assert guarded.get("/ui/static/ui.css").status_code == 200
    wrong = guarded.post("/ui/login", data={"token": "nope", "next": "/ui/runs"})
    assert wrong.status_code == 401 and "not the token" in wrong.text
    ok = guarded.post("/ui/login", data={"token": TOKEN, "next": "//evil.example"},
                      follow_redirects=False)  # fmt: skip
    assert ok.headers["location"] == "/ui/runs"
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age" in cookie
    assert guarded.get("/ui/runs").status_code == 200  # the client keeps the cookie
    assert guarded.get("/runs").status_code == 200
    # A write with the cookie needs an Origin naming the server.
    assert guarded.post("/ui/runs/new", data={}).status_code == 401
    same = guarded.post("/ui/runs/new", data={}, headers={"Origin": "http://testserver"})
    assert same.status_code == 422
    assert guarded.post("/ui/logout", headers={"Origin": "http://testserver"}).status_code == 200
    assert guarded.get("/runs").status_code == 401


def test_compare_page_shows_the_runs_spectra_side_by_side(client, play, tiny_spec):
    a = play(tiny_spec(name="a"), 2, parameters=(96, 32), mechanism=True).run_id
    b = play(tiny_spec(weight_decay=0.001), 2, parameters=(96, 32), mechanism=True, seed=1).run_id
    old = play(tiny_spec(seed=5), 2, parameters=(96, 32), seed=2).run_id
    page = client.get("/ui/compare", params={"runs": f"{b},{a}"}).text
    srcs = [s.replace("&amp;", "&") for s in re.findall(r'<img src="([^"]+)"', page)]
    spectrum = [s for s in srcs if s.startswith("/compare/spectrum?")]
    assert len(srcs) == 3 and len(spectrum) == 1 and f"runs={b}%2C{a}" in spectrum[0]
    png = client.get(spectrum[0])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    csv_link = re.search(r'href="(/compare/spectrum\?[^"]*format=csv)"', page)
    assert csv_link and client.get(csv_link[1].replace("&amp;", "&")).status_code == 200
    mixed = client.get("/ui/compare", params={"runs": f"{a},{old}"}).text
    assert "/compare/spectrum" not in mixed
    assert re.search(rf'id="spectrum-missing">[^<]*run {old}\s+was trained before', mixed)


@pytest.mark.parametrize("path", ["/ui/runs/new", "/ui/sweeps/new"])
def test_the_forms_help_reads_well_and_names_the_original_experiment_so(client, path):
    """Each field's help: its meaning, then its rule once, each a sentence with one full stop;
    names spelt as written (SGD, CIFAR-10); "the seed" is only ever the seed field."""
    page = client.get(path).text
    helps = {
        name: html.unescape(re.sub(r"<[^>]+>", "", text))
        for name, text in re.findall(r'<p class="rule" id="rule-(\w+)">(.*?)</p>', page)
    }
    assert set(RunSpec.model_fields) - {"name"} <= set(helps)  # a sweep names itself
    for name, text in helps.items():
        assert ".." not in text and ". ." not in text, (name, text)
        assert "the seed" not in text.lower() and "seed's" not in text, (name, text)
        assert "Sgd" not in text and "Cifar10" not in text, (name, text)
    assert "SGD (the original experiment's)" in helps["optimizer"]
    assert "CIFAR-10" in helps["dataset"]
    # The bounds are stated by the rule alone, not again in the description.
    assert helps["epochs"].count("1000") == 1 and helps["batch_size"].count("8192") == 1
    assert helps["hidden_sizes"].count("8192") == 1 and helps["tolerances"].count("32") == 1
    assert "distinct" in helps["tolerances"]
