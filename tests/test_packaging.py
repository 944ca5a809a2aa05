"""What the wheel and the sdist hold, built offline with the venv's setuptools."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found]  # 3.10 only; mypy checks as 3.10

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DATA = {"banyan/py.typed", "banyan/routing_vectors.json"}
LEFT_OUT = ("tests/", "benchmarks/", "stress/", ".ci/")
#: A Markdown link or image whose target is a path in this repository.
RELATIVE_LINK = re.compile(r"\]\((?!https?://|#|mailto:)[^)]+\)")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist, and the wheel built from it, as ``python -m build`` makes them."""
    out = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"sdist": next(out.glob("*.tar.gz")), "wheel": next(out.glob("*.whl"))}


def _wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def _sdist_names(sdist: Path) -> set[str]:
    with tarfile.open(sdist) as archive:
        return {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}


def _metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return HeaderParser().parsestr(archive.read(name).decode())


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_package_data_in_and_repository_tools_out(dist: dict[str, Path], kind: str) -> None:
    """Both hold py.typed and the routing vectors; neither holds tests, benchmarks or stress."""
    names = _wheel_names(dist[kind]) if kind == "wheel" else _sdist_names(dist[kind])
    assert names >= PACKAGE_DATA
    assert not [n for n in names if n.startswith(LEFT_OUT)]


@pytest.mark.slow
def test_sdist_holds_the_docs(dist: dict[str, Path]) -> None:
    """The sdist carries every file of docs/, which the README links to."""
    docs = {f"docs/{p.name}" for p in (ROOT / "docs").iterdir()}
    assert docs
    assert _sdist_names(dist["sdist"]) >= docs


@pytest.mark.slow
def test_wheel_metadata_is_complete_for_the_package_page(dist: dict[str, Path]) -> None:
    """Typing :: Typed, project URLs, no dev or bench extra, a README with no relative link."""
    metadata = _metadata(dist["wheel"])
    assert "Typing :: Typed" in metadata.get_all("Classifier", [])
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL", []))
    assert {"Homepage", "Repository", "Issues", "Changelog"} <= set(urls)
    assert set(metadata.get_all("Provides-Extra", [])) == {"postgres", "server", "zstd"}
    assert RELATIVE_LINK.findall(str(metadata.get_payload())) == []


def _declared() -> list[Requirement]:
    """Every requirement pyproject.toml declares: dependencies, extras and groups."""
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lists = [project["project"]["dependencies"]]
    lists += project["project"]["optional-dependencies"].values()
    lists += project["dependency-groups"].values()
    return [Requirement(item) for items in lists for item in items if isinstance(item, str)]


def _pins() -> dict[str, str]:
    """The lock's pin of each package for this interpreter."""
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            pin = Requirement(line)
            if pin.marker is None or pin.marker.evaluate():
                pins[canonicalize_name(pin.name)] = str(pin.specifier).removeprefix("==")
    return pins


def _unpinned(requirement: Requirement, pins: dict[str, str]) -> bool:
    pin = pins.get(canonicalize_name(requirement.name))
    return pin is None or not requirement.specifier.contains(pin, prereleases=True)


def test_lock_satisfies_every_declared_requirement() -> None:
    """requirements-lock.txt pins each package pyproject.toml asks for, within its range."""
    pins = _pins()
    here = [r for r in _declared() if r.marker is None or r.marker.evaluate()]
    assert [str(r) for r in here if _unpinned(r, pins)] == [], "run `make lock`"


def _lock_parents() -> dict[str, set[str]]:
    """Each locked package and what the lock says needs it (``# via`` lines)."""
    parents: dict[str, set[str]] = {}
    name = ""
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            name = canonicalize_name(Requirement(line).name)
            parents.setdefault(name, set())
        elif name and line.startswith(" "):
            parent = line.strip().lstrip("#").strip().removeprefix("via").strip()
            if parent:
                parents[name].add(parent)
    return parents


def _group_packages(project: dict[str, Any], *groups: str) -> set[str]:
    """The packages these dependency groups name, included groups too."""
    names: set[str] = set()
    for group in groups:
        for item in project["dependency-groups"][group]:
            if isinstance(item, str):
                names.add(canonicalize_name(Requirement(item).name))
            else:
                names |= _group_packages(project, item["include-group"])
    return names


def test_make_demo_installs_no_dev_or_bench_tool() -> None:
    """make demo installs `.[server]` only, and nothing it pulls in is a dev or bench tool."""
    recipe = re.search(
        r"^\$\(VENV\)/\.demo:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M
    )
    assert recipe is not None
    assert "-e '.[server]'" in recipe[1]
    assert "--group" not in recipe[1]
    # uv labels some extras' packages (psycopg) with the bare "(pyproject.toml)": a superset.
    demo = {"banyan-sdk (pyproject.toml)", "banyan-sdk (pyproject.toml:server)"}
    parents = _lock_parents()
    while grown := {p for p, needs in parents.items() if needs & demo} - demo:
        demo |= grown
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
    tools = _group_packages(project, "dev", "bench") - _group_packages(project, "bootstrap")
    assert {"granian", "msgspec", "httpx"} <= demo
    assert demo & tools == set()
