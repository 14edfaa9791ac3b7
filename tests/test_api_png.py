"""The PNG twins of the JSON views, and the old report page's redirect, over HTTP.

Runs are stored with random results through the store (as a worker would); the figures are
decoded and checked for size and content, the render cache through the app's renderer."""

import io
import random
import re

import pytest
from conftest import assert_drawn, has_colour, random_epoch
from PIL import Image

from server.store import jobs
from server.views.figures.draw import FigureOptions, layer_colours, series_colours

SMALL = FigureOptions(width=480, height=360, dpi=60)
SIZE = {"width": SMALL.width, "height": SMALL.height, "dpi": SMALL.dpi}
PNG_PARAMS = SIZE | {"format": "png"}
DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture
def pair(play, tiny_spec):
    """Two finished runs of the seed's pair: weight decay 0 and 0.001."""
    base = play(tiny_spec(name="base"), epochs=4, seed=1)
    decay = play(tiny_spec(name="decay", weight_decay=0.001), epochs=4, seed=2)
    return base.run_id, decay.run_id


def get_png(client, path, **params):
    response = client.get(path, params=PNG_PARAMS | params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return assert_drawn(response.content, SMALL)


def renders(client) -> tuple[int, int]:
    renderer = client.app.state.renderer
    return renderer.renders, renderer.hits


@pytest.mark.parametrize("scope", ["layers", "all", "last2"])
@pytest.mark.parametrize("tol", [None, 0.01])
def test_constancy_png(client, pair, scope, tol):
    params = {"scope": scope} | ({} if tol is None else {"tol": tol})
    rgb = get_png(client, f"/runs/{pair[0]}/constancy", **params)
    # One line per layer (light to dark), or one line for a mean.
    assert all(has_colour(rgb, c) for c in layer_colours(4)) == (scope == "layers")


@pytest.mark.parametrize("scope", ["all", "last2", 2])
@pytest.mark.parametrize("tol", [None, 0])
def test_compare_png_tells_the_runs_apart(client, pair, scope, tol):
    params = {"runs": f"{pair[0]},{pair[1]}", "scope": scope} | (
        {} if tol is None else {"tol": tol}
    )
    rgb = get_png(client, "/compare", **params)
    assert all(has_colour(rgb, c) for c in series_colours(2))


@pytest.mark.parametrize("metric", ["loss", "accuracy"])
def test_metrics_png_draws_train_and_test(client, pair, metric):
    rgb = get_png(client, f"/runs/{pair[0]}/metrics", metric=metric)
    assert all(has_colour(rgb, c) for c in series_colours(2))


def test_weights_png_draws_every_layer(client, pair):
    rgb = get_png(client, f"/runs/{pair[0]}/weights")
    assert all(has_colour(rgb, c) for c in layer_colours(4))


def test_figures_draw_the_run_asked_for(client, pair):
    first, second = (
        client.get(f"/runs/{run_id}/constancy", params=PNG_PARAMS).content for run_id in pair
    )
    assert first != second


def test_size_and_resolution_follow_the_query(client, pair):
    response = client.get(
        f"/runs/{pair[0]}/metrics", params={"format": "png", "width": 777, "height": 333}
    )
    assert Image.open(io.BytesIO(response.content)).size == (777, 333)
    default = client.get(f"/runs/{pair[0]}/metrics", params={"format": "png"})
    assert Image.open(io.BytesIO(default.content)).size == (1000, 750)


@pytest.mark.parametrize(
    "accept,expected",
    [
        ("image/png", "image/png"),
        ("image/avif,image/webp,image/*,*/*;q=0.8", "image/png"),  # a browser's <img>
        ("application/json;q=0.5, image/png", "image/png"),
        ("application/json, image/png;q=0.5", "application/json"),
        ("image/png, application/json", "application/json"),  # a tie: JSON
        ("text/html,application/xhtml+xml,*/*;q=0.8", "application/json"),  # a browser's tab
        ("*/*", "application/json"),
        ("image/png;q=0", "application/json"),
        ("image/png;q=oops", "application/json"),
    ],
)
def test_accept_header_chooses_png_or_json(client, pair, accept, expected):
    response = client.get(f"/runs/{pair[0]}/weights", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == expected
    assert response.headers["vary"] == "Accept"


def test_format_wins_over_accept(client, pair):
    path = f"/runs/{pair[0]}/constancy"
    as_json = client.get(path, params={"format": "json"}, headers={"Accept": "image/png"})
    assert as_json.headers["content-type"] == "application/json"
    assert as_json.json() == client.get(path).json()
    as_png = client.get(path, params={"format": "png"}, headers={"Accept": "application/json"})
    assert as_png.headers["content-type"] == "image/png"
    assert as_png.headers["vary"] == "Accept"


PNG_VIEWS = ["/runs/{id}/constancy", "/runs/{id}/metrics", "/runs/{id}/weights", "/compare"]


def view_url(view: str, run_id: int) -> tuple[str, dict]:
    if view == "/compare":
        return view, {"runs": str(run_id)}
    return view.format(id=run_id), {}


@pytest.mark.parametrize("view", PNG_VIEWS)
@pytest.mark.parametrize(
    "ask", [{"params": {"format": "png"}}, {"headers": {"Accept": "image/png"}}]
)
def test_unknown_run_is_a_json_404_for_png_requests_too(client, view, ask):
    path, params = view_url(view, 999)
    response = client.get(path, params=params | ask.get("params", {}), headers=ask.get("headers"))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert "999" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/runs/{base}/constancy", "/compare"])
def test_a_tolerance_not_computed_is_404_for_png(client, pair, path):
    params = PNG_PARAMS | {"tol": 0.5, "runs": f"{pair[0]},{pair[1]}"}
    response = client.get(path.format(base=pair[0]), params=params)
    assert response.status_code == 404
    assert "0.5" in response.json()["detail"]


def test_a_layer_not_measured_is_404_for_png(client, pair):
    response = client.get("/compare", params=PNG_PARAMS | {"runs": str(pair[0]), "scope": 9})
    assert response.status_code == 404 and "layer 9" in response.json()["detail"]


@pytest.mark.parametrize("view", PNG_VIEWS)
@pytest.mark.parametrize(
    "param,value",
    [("width", 199), ("width", "wide"), ("height", 4001), ("dpi", 0), ("format", "gif")],
)
def test_bad_figure_options_are_422_naming_the_parameter(client, pair, view, param, value):
    path, params = view_url(view, pair[0])
    response = client.get(path, params=params | PNG_PARAMS | {param: value})
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["query", param]]


@pytest.mark.parametrize(
    "path,param,value",
    [
        ("/runs/{id}/constancy", "scope", "layer"),
        ("/runs/{id}/constancy", "tol", -1),
        ("/runs/{id}/metrics", "metric", "f1"),
        ("/compare", "scope", -1),
        ("/compare", "scope", "first"),
    ],
)
def test_bad_view_parameters_are_422(client, pair, path, param, value):
    url, params = view_url(path, pair[0])
    response = client.get(url, params=params | PNG_PARAMS | {param: value})
    assert response.status_code == 422
    assert all(e["loc"][:2] == ["query", param] for e in response.json()["detail"])


def test_a_finished_runs_figure_is_drawn_once(client, pair):
    path = f"/runs/{pair[0]}/constancy"
    first = client.get(path, params=PNG_PARAMS)
    assert renders(client) == (1, 0)
    second = client.get(path, params=PNG_PARAMS, headers={"Accept": "image/png"})
    assert second.content == first.content and renders(client) == (1, 1)
    # Another figure of the same run is drawn anew.
    client.get(path, params=PNG_PARAMS | {"scope": "all"})
    client.get(path, params=PNG_PARAMS | {"width": 500})
    assert renders(client) == (3, 1)


def test_a_running_runs_figure_follows_its_epochs(client, db, play, tiny_spec):
    played = play(tiny_spec(epochs=5), epochs=2, finish=None)
    path = f"/runs/{played.run_id}/metrics"
    before = client.get(path, params=PNG_PARAMS).content
    assert client.get(path, params=PNG_PARAMS).content == before
    assert renders(client) == (1, 1)

    epoch = random_epoch(random.Random(9), 3, played.tensors, 4)
    with db.write() as session:
        jobs.record_epoch(session, played.lease, epoch, lease_seconds=60)
    after = client.get(path, params=PNG_PARAMS).content
    assert after != before and renders(client) == (2, 1)
    assert client.get(path).json()["epochs"] == [1, 2, 3]


def test_a_queued_run_draws_empty_figures(client, tiny_spec):
    run_id = client.post("/runs", json=tiny_spec()).json()["id"]
    for path in (f"/runs/{run_id}/constancy", f"/runs/{run_id}/weights"):
        response = client.get(path, params=PNG_PARAMS)
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        rgb = assert_drawn(response.content, SMALL, ink=0.005)
        assert not has_colour(rgb, layer_colours(4)[0])


def test_the_old_report_page_redirects_to_the_run_page(client, tiny_spec):
    run_id = client.post("/runs", json=tiny_spec(name="waiting")).json()["id"]
    moved = client.get(f"/runs/{run_id}/report", follow_redirects=False)
    assert moved.status_code == 308 and moved.headers["location"] == f"/ui/runs/{run_id}"
    landed = client.get(f"/runs/{run_id}/report")
    assert landed.status_code == 200 and "waiting" in landed.text
    missing = client.get("/runs/999/report", follow_redirects=False)
    assert missing.status_code == 404 and missing.json()["detail"]


def test_openapi_documents_png_and_html(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/runs/{run_id}/constancy", "/runs/{run_id}/metrics", "/runs/{run_id}/weights"):
        content = paths[path]["get"]["responses"]["200"]["content"]
        assert {"application/json", "image/png"} <= set(content)
    assert "image/png" in paths["/compare"]["get"]["responses"]["200"]["content"]
    assert "308" in paths["/runs/{run_id}/report"]["get"]["responses"]
    names = {p["name"] for p in paths["/compare"]["get"]["parameters"]}
    assert {"format", "width", "height", "dpi", "scope", "tol", "runs"} <= names
