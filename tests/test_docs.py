"""The README and docs/ say only what exists and what works.

Every relative link (and its #anchor), every repository path and every `make` target they name
exists; every shell and Python block a user would paste runs as pasted against `make run`.
A block that is only an illustration has `<!-- not run: REASON -->` on the line before it
(docs/testing.md, "The docs")."""

import csv
import json
import os
import re
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from conftest import ROOT, Served, make_run_served

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = ("sh", "bash", "python")
NOT_RUN = re.compile(r"<!-- not run: (.+?) -->")
FENCE = re.compile(r"^( *)```(\S*)\n(.*?)^\1```$", re.S | re.M)
# Repository paths as the docs write them: under a top-level folder of the repository.
PATH = re.compile(
    r"(?<![\w/.$-])((?:server|worker|decaylab|tests|benchmarks|scripts|docs|\.ci)/[\w./*-]*)"
)
# `path.py: name`: a name that the file defines.
DEFINED = re.compile(r"`([\w/]+\.py): (\w+)(?:\.(\w+))?`")


@dataclass
class Block:
    doc: Path
    line: int
    lang: str
    text: str
    not_run: str | None  # the reason, for an illustration

    def __str__(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line} ({self.lang})"


def blocks(doc: Path) -> list[Block]:
    text = doc.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip().rsplit("\n", 1)[-1]
        reason = NOT_RUN.fullmatch(before.strip())
        body = "\n".join(line[len(match[1]) :] for line in match[3].splitlines())
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(doc, line, match[2], body + "\n", reason and reason[1]))
    return found


def prose(doc: Path) -> str:
    """The text but its illustrations (which name things that need not exist here, e.g. a
    downloaded archive)."""
    text = doc.read_text()
    for block in blocks(doc):
        if block.not_run is not None:
            text = text.replace(block.text.rstrip("\n"), "", 1)
    return text


@cache
def anchors(doc: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but '-' and '_' dropped, spaces '-'."""
    text = FENCE.sub("", doc.read_text())
    slugs = set()
    for heading in re.findall(r"^#+ (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        slugs.add(slug)
    return slugs


def links(doc: Path) -> list[tuple[str, Path, str]]:
    """(as written, the file it names, its anchor) for every relative link and image."""
    found = []
    for target in re.findall(r"\]\(([^)\s]+)\)", FENCE.sub("", doc.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not ours to check
        path, _, anchor = target.partition("#")
        found.append((target, (doc.parent / path).resolve() if path else doc, anchor))
    return found


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: str(doc.relative_to(ROOT)))
def test_links_paths_and_make_targets_exist(doc: Path):
    missing = []
    for target, path, anchor in links(doc):
        if not path.exists():
            missing.append(f"link {target}: no {path.relative_to(ROOT)}")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            missing.append(f"link {target}: no heading #{anchor} in {path.name}")
    text = prose(doc)
    for name in PATH.findall(text):
        name = name.rstrip(".")
        if not list(ROOT.glob(name.rstrip("/"))):
            missing.append(f"path {name}")
    for name, symbol, attribute in DEFINED.findall(text):
        source = (ROOT / name).read_text() if (ROOT / name).exists() else ""
        for defined in filter(None, (symbol, attribute)):
            if not re.search(rf"^\s*(def|class) {defined}\b|^{defined}\b.*=", source, re.M):
                missing.append(f"{name}: {defined} is not defined there")
    targets = make_targets()
    commands = re.findall(r"`make ([a-z][a-z-]*)", text) + re.findall(
        r"^make ([a-z][a-z-]*)", text, re.M
    )
    missing += [f"make {target}" for target in commands if target not in targets]
    assert not missing, f"{doc.relative_to(ROOT)} names what does not exist: {missing}"


def test_every_illustration_says_why_it_is_not_run():
    """The convention itself: a skipped block gives its reason; nothing else is skipped."""
    langs = set()
    for doc in DOCS:
        for block in blocks(doc):
            langs.add(block.lang)
            if block.not_run is not None:
                assert len(block.not_run.split()) >= 2, f"{block}: say why it is not run"
    # Fences of other kinds are never run: a typo like ```shell would hide a block from the test.
    assert langs <= {*RUN, "text", "json", "yaml"}, langs
    runnable = [block for doc in DOCS for block in blocks(doc) if block.not_run is None]
    assert any(block.doc.name == "README.md" for block in runnable)


# Running the blocks: README first (its quick start), then every page, its shell blocks (in one
# bash) and its Python blocks (in one script).
LANGS = {"shell": ("sh", "bash"), "python": ("python",)}
PASTED = [
    pytest.param(doc, kind, id=f"{doc.relative_to(ROOT)}-{kind}")
    for doc in DOCS
    for kind, langs in LANGS.items()
    if any(block.lang in langs and block.not_run is None for block in blocks(doc))
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    with make_run_served(tmp_path_factory.mktemp("make-run")) as served:
        yield served


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A directory that stands for the user's checkout after `make run`: its .venv is this
    interpreter's environment (as in tests/test_setup_make_run.py); files the blocks write land
    here."""
    (tmp_path / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    return tmp_path


def paste(served: Served, doc: Path, cwd: Path, kind: str) -> subprocess.CompletedProcess:
    """Run a doc's shell or Python blocks as a user would paste them, in order, into one bash
    (-e: a failing command fails the paste) or one Python script, against `served`."""
    port = served.url.rsplit(":", 1)[1]
    script = "".join(b.text for b in blocks(doc) if b.not_run is None and b.lang in LANGS[kind])
    script = re.sub(r"(localhost|127\.0\.0\.1):8000\b", rf"\1:{port}", script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DECAYLAB_")}
    env["DECAYLAB_URL"] = served.url
    command = (
        ["bash", "-e", "-o", "pipefail", "-c", script]
        if kind == "shell"
        else [".venv/bin/python", "-c", script]
    )
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def request(served: Served, path: str) -> dict:
    with urllib.request.urlopen(served.url + path, timeout=10) as answer:
        return json.load(answer)


def failed_runs(served: Served) -> list[dict]:
    return [run for run in request(served, "/runs?limit=1000")["runs"] if run["status"] == "failed"]


@pytest.mark.slow
@pytest.mark.parametrize(("doc", "kind"), PASTED)
def test_blocks_run_as_pasted(served: Served, checkout: Path, doc: Path, kind: str):
    failed_before = failed_runs(served)
    result = paste(served, doc, checkout, kind)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:], served.logs())
    # No pasted block may leave a failed run behind it (one that goes on without waiting).
    assert failed_runs(served) == failed_before, served.logs()

    if doc == ROOT / "README.md":
        # What the README says of its pair: weights stay exactly constant without decay only.
        runs = {run["name"]: run for run in request(served, "/runs?limit=1000")["runs"]}
        pair = runs["no decay"]["id"], runs["decay 0.001"]["id"]
        compared = request(served, "/compare?runs={},{}&tol=0&scope=all".format(*pair))["runs"]
        assert [run["weight_decay"] for run in compared] == [0, 0.001]
        assert max(compared[0]["percent"]) >= 12 > 1 > max(compared[1]["percent"])  # "a sixth"
        with (checkout / "pair.csv").open() as table:
            rows = list(csv.DictReader(table))
        assert {int(row["run_id"]) for row in rows} == set(pair)
        assert {float(row["tolerance"]) for row in rows} == {0, 0.001, 0.01, 0.1}


@pytest.mark.slow
def test_the_quick_start_stops_when_a_run_fails(served: Served, checkout: Path):
    """A run that fails (here: CIFAR-10, offline) ends the quick start with a non-zero status
    once the pair has ended (`decaylab watch` exits 1), and nothing after it runs."""
    readme = ROOT / "README.md"
    runnable = [block for block in blocks(readme) if block.not_run is None]
    quick_start = next(block for block in runnable if "decaylab watch" in block.text)
    first = "--weight-decay 0 --dataset synthetic"
    assert first in quick_start.text
    failing = quick_start.text.replace(first, "--weight-decay 0 --dataset cifar10", 1)
    # The other run only has to end: one short epoch will do.
    failing = failing.replace("--epochs 5 --train-size 1000", "--epochs 1 --train-size 100")
    doc = checkout / "README.md"
    doc.write_text(f"```sh\n{failing}```\n")
    result = paste(served, doc, checkout, "shell")
    assert result.returncode != 0, result.stdout
    assert "failed" in result.stdout + result.stderr
    assert [run["status"] for run in request(served, "/runs?limit=2")["runs"]] == [
        "succeeded",
        "failed",
    ]  # newest first: watch waited for both
    assert not (checkout / "pair.csv").exists()  # the export after the failure did not run
