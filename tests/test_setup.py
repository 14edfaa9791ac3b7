"""Packaging: installs are reproducible and the API installs and imports without torch."""

import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
TORCH_PIN = "torch==2.13.0"


def pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    reqs = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    return {canonicalize_name(r.name): str(r.specifier) for r in reqs}


def closure(extras: tuple[str, ...]) -> set[str]:
    """Installed distributions that `pip install decaylab[extras]` pulls in, decaylab included."""
    seen: set[str] = set()
    # By name and extras: decaylab's extras name each other (worker = decaylab[server] + torch).
    done: set[tuple[str, tuple[str, ...]]] = set()
    todo = [("decaylab", extras)]
    while todo:
        name, wanted = todo.pop()
        if (canonicalize_name(name), wanted) in done:
            continue
        done.add((canonicalize_name(name), wanted))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # only needed on other platforms (its marker is false here)
        seen.add(canonicalize_name(name))
        for line in dist.requires or []:
            req = Requirement(line)
            envs = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((req.name, tuple(req.extras)))
    return seen


def test_the_bare_install_is_the_client_and_only_the_worker_pulls_torch():
    base = closure(())
    assert {"httpx", "pandas", "click"} <= base
    assert not {"fastapi", "sqlalchemy", "matplotlib", "torch"} & base
    server = closure(("server",))
    assert {"fastapi", "sqlalchemy", "matplotlib"} <= server and "torch" not in server
    assert "torch" in closure(("worker",))


def test_torch_is_pinned_everywhere_to_the_same_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(Requirement(r).name == "torch" for r in project["dependencies"])
    for extra in ("worker", "dev"):
        assert TORCH_PIN in project["optional-dependencies"][extra]
    assert pins()["torch"] == "==2.13.0"
    base_image = re.search(r"^FROM (\S+)", (ROOT / "Dockerfile.worker").read_text(), re.M)
    assert base_image and base_image[1].startswith("pytorch/pytorch:2.13.0-cuda")


# The pytorch/pytorch tags published for torch 2.13.0 (Docker Hub, hub.docker.com/r/pytorch/
# pytorch/tags?name=2.13.0, and the release's docker workflow, .github/workflows/docker-release.yml
# in pytorch/pytorch: CUDA 12.6 and 13.0, each with cuDNN 9, as runtime and devel images).
# There is no cuda12.8 image for 2.13.0: a Dockerfile naming one does not build.
PUBLISHED_TORCH_2_13_IMAGES = {
    f"pytorch/pytorch:2.13.0-cuda{cuda}-cudnn9-{kind}"
    for cuda in ("12.6", "13.0")
    for kind in ("runtime", "devel")
}


def test_the_worker_image_is_built_on_a_published_pytorch_tag():
    base_image = re.search(r"^FROM (\S+)", (ROOT / "Dockerfile.worker").read_text(), re.M)
    assert base_image and base_image[1] in PUBLISHED_TORCH_2_13_IMAGES, base_image
    # The Docker page says which image and which NVIDIA driver it needs.
    docker = (ROOT / "docs" / "docker.md").read_text()
    assert base_image[1] in docker
    assert re.search(r"NVIDIA driver.{0,60}≥ ?5\d\d", docker, re.S)


def test_everything_installed_for_decaylab_is_pinned_at_its_installed_version():
    """A new dependency (or an upgrade) must land in constraints.txt too."""
    pinned = pins()
    for name in sorted(closure(("worker", "dev")) - {"decaylab"}):
        assert name in pinned, f"{name} is not pinned in constraints.txt"
        installed = metadata.version(name).split("+")[0]  # torch 2.13.0+cpu meets ==2.13.0
        assert pinned[name] == f"=={installed}", f"{name} {installed} vs pin {pinned[name]}"


# Imports every module of a package with only the given distributions importable (plus the
# standard library), as in an image; optional imports of absent packages fail as they would there.
IMPORT_ALL_WITH_ONLY = """
import importlib, json, pkgutil, re, sys
from importlib import metadata

package, allowed, forbidden = sys.argv[1], set(json.loads(sys.argv[2])), sys.argv[3:]
providers = metadata.packages_distributions()

class OnlyAllowed:
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        dists = {re.sub(r"[-_.]+", "-", d).lower() for d in providers.get(top, [])}
        if top in forbidden or (dists and not dists & allowed):
            raise ModuleNotFoundError(f"No module named {name!r} (not installed)", name=name)

sys.meta_path.insert(0, OnlyAllowed())
root = importlib.import_module(package)
for m in pkgutil.walk_packages(root.__path__, package + "."):
    if not m.name.endswith("__main__"):  # that one would start serving
        importlib.import_module(m.name)
"""


@pytest.mark.parametrize(
    "package,extras,forbidden",
    [
        ("server", ("server",), ["worker"]),
        ("worker", ("worker",), []),
        ("decaylab", (), ["server", "worker"]),
    ],
    ids=["api-image", "worker-image", "client"],
)
def test_each_image_imports_with_its_install_alone(package, extras, forbidden):
    """The API image installs decaylab with the `server` extra (so without torch); the worker
    image with the `worker` extra; the client is the bare install. Each package must import with
    no more than that."""
    allowed = json.dumps(sorted(closure(extras)))
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL_WITH_ONLY, package, allowed, *forbidden],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_built_package_has_every_tracked_file(tmp_path):
    """The images install a built wheel, not the source tree: templates, migrations and new
    subpackages must all be in it (package-data in pyproject.toml)."""
    tracked = (
        subprocess.run(
            ["git", "ls-files", "-z", "pyproject.toml", "decaylab", "server", "worker"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip("\0")
        .split("\0")
    )
    src = tmp_path / "src"
    for name in tracked:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["-w", str(tmp_path / "dist"), str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("decaylab-*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    assert set(tracked) - {"pyproject.toml"} <= packaged


def test_installs_show_their_progress():
    """The first `make run` downloads GBs: pip's progress shows, not minutes of silence."""
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if "pip install" in line and "-e '." in line]
    assert len(installs) == 2
    for line in installs:
        assert " -q" not in line and "--progress-bar on" in line, line
    readme = (ROOT / "README.md").read_text()
    # The CPU-wheel hint comes before the quick start, where a user without a GPU needs it.
    assert readme.index("download.pytorch.org/whl/cpu") < readme.index("## Quick start")


def test_make_run_installs_what_the_quick_start_and_the_cli_docs_use():
    """`make run` is the user's whole install: it must bring pyarrow for `decaylab export
    --format parquet` (docs/cli.md) and, with the client, the `decaylab` command."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("$(RUN_STAMP):", 1)[1].split("\n\n", 1)[0]
    extras = re.search(r"-e '\.\[([\w,]+)\]'", recipe)
    assert extras, recipe
    installed = closure(tuple(extras[1].split(",")))
    assert {"pyarrow", "torch", "fastapi", "httpx"} <= installed, installed
