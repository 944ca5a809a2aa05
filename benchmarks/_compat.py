"""The other side of a paired benchmark: the released banyan-sdk 1.0.1, or a git ref of this tree.

The venv lives in ``$BANYAN_COMPAT_VENV`` (the directory the compat test
caches it in), else /tmp/banyan-compat-venv. It is built on first use and
rebuilt when its ``banyan`` no longer imports as 1.0.1. Scripts run with
``python -I`` so that the 2.x checkout in the working directory, or a
``PYTHONPATH``, can never shadow the installed 1.0.1 package.

A git ref (``--baseline REF``) is checked out with ``git archive`` into a
temporary tree beside this checkout's ``benchmarks/``, so that the very same
workloads import the ref's ``banyan`` in a subprocess of this venv.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

VERSION = "1.0.1"
DEFAULT_ROOT = "/tmp/banyan-compat-venv"
#: Pins what 1.0.1 pulls in (requests, typer, rich, pyyaml): the compat101 group.
LOCK = str(Path(__file__).parents[1] / "requirements-lock.txt")
BENCHMARKS = Path(__file__).parent


def _root() -> Path:
    return Path(os.environ.get("BANYAN_COMPAT_VENV") or DEFAULT_ROOT)


def _works(python: Path) -> bool:
    probe = [str(python), "-I", "-c", f"import banyan; assert banyan.__version__ == {VERSION!r}"]
    if not python.exists():
        return False
    done = subprocess.run(probe, capture_output=True, timeout=60, check=False, cwd="/")
    return done.returncode == 0


def compat_python() -> Path:
    """The python executable of a venv with banyan-sdk 1.0.1 (built or repaired on demand)."""
    root = _root()
    python = root / "bin" / "python"
    if _works(python):
        return python
    root.parent.mkdir(parents=True, exist_ok=True)
    # Two benchmarks started together must not build the same venv at once.
    with open(f"{root}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _works(python):
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)],
                           check=True, timeout=120)  # fmt: skip
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-c", LOCK,
                            f"banyan-sdk=={VERSION}"], check=True, timeout=300)  # fmt: skip
        if not _works(python):
            raise RuntimeError(f"{root}: banyan-sdk {VERSION} does not import after install")
    return python


def run_script(source: str, *args: str, timeout: float = 120) -> Any:
    """Run ``source`` with the 1.0.1 venv's python; return the JSON of its last stdout line."""
    with tempfile.TemporaryDirectory(prefix="banyan-101-") as tmp:
        script = Path(tmp, "bench101.py")
        script.write_text(source)
        command = [str(compat_python()), "-I", str(script), *args]
        return _last_json(command, tmp, timeout, "1.0.1 script")


@contextlib.contextmanager
def baseline_tree(ref: str) -> Iterator[Path]:
    """A temporary tree with ``banyan/`` as of git ``ref`` and this checkout's ``benchmarks/``."""
    with tempfile.TemporaryDirectory(prefix="banyan-base-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(BENCHMARKS.parent), "archive", ref, "banyan"],
            capture_output=True, check=True, timeout=60,
        )  # fmt: skip
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True, timeout=60)
        ignore = shutil.ignore_patterns("results", "__pycache__")
        shutil.copytree(BENCHMARKS, Path(tmp, "benchmarks"), ignore=ignore)
        yield Path(tmp)


def run_module(tree: Path, module: str, *args: str, timeout: float = 120) -> Any:
    """``python -m module args`` in ``tree`` (its ``banyan`` first on the path); its last JSON."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [sys.executable, "-m", module, *args]
    return _last_json(command, str(tree), timeout, f"baseline {module}", env)


def _last_json(
    command: list[str], cwd: str, timeout: float, what: str, env: dict[str, str] | None = None
) -> Any:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          check=False, cwd=cwd, env=env)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def closed_url() -> str:
    """A loopback URL nothing listens on (a port bound and released just now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
