"""The on-disk prompt cache: one small JSON file per project, replaced atomically.

A worker started while the backend is down serves the last prompts any
process of its project fetched. The file holds the server's prompt JSON as
fetched (experiment configuration included), so a prompt read back from disk
routes exactly as it did when it was fetched.

Location: ``cache_dir``, else ``$BANYAN_CACHE_DIR``, else
``$XDG_CACHE_HOME/banyan/prompts`` (``~/.cache/banyan/prompts``). The file is
``<project>-<id>.json`` where ``<id>`` is a digest of the base URL and API
key (never the key itself), so two servers or keys never share a file.
Processes rewrite it under ``flock`` on ``.<file>.lock`` beside it, so that
workers starting together do not drop each other's new entries.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from banyan import _fork

try:
    import fcntl
except ImportError:  # Windows: processes may then overwrite each other's new entries
    fcntl = None  # type: ignore[assignment]

FORMAT = 1
#: How long a store waits for another process's, then goes ahead without the lock.
LOCK_WAIT = 2.0

#: (name, version, branch) of a cached prompt; the project is the file.
DiskKey = tuple[str, str | None, str]


def default_dir() -> Path:
    """The cache directory when none is configured."""
    explicit = os.environ.get("BANYAN_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "banyan" / "prompts"


class DiskCache:
    """Reads and atomically rewrites one project's cache file (at most ``limit`` prompts)."""

    def __init__(
        self, directory: Path, base_url: str, api_key: str, project: str | None, limit: int
    ) -> None:
        ident = hashlib.sha256(f"{base_url}\n{api_key}".encode()).hexdigest()[:16]
        label = re.sub(r"[^A-Za-z0-9._-]", "_", project or "default")[:64]
        self.path = directory / f"{label}-{ident}.json"
        self._limit = limit
        self._lock = threading.Lock()

    def load(self) -> dict[DiskKey, dict[str, Any]]:
        """Every cached prompt body by key; empty when there is no file yet.

        Raises OSError when the file cannot be read and ValueError when it does
        not parse (cut short or garbled): the caller counts a disk error.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(raw)
            entries = data["entries"] if data.get("format") == FORMAT else []
            return {
                (e["name"], e["version"], e["branch"]): e["body"]
                for e in entries
                if isinstance(e.get("body"), dict)
            }
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"unreadable prompt cache {self.path}: {exc!r}") from None

    def get(self, key: DiskKey) -> dict[str, Any] | None:
        """The cached body for one prompt, or None; raises as :meth:`load` does."""
        return self.load().get(key)

    def store(self, key: DiskKey, body: dict[str, Any] | None) -> None:
        """Save (or, with None, remove) one prompt; raises OSError when the disk refuses."""
        with self._lock, self._locked():
            self._clean_orphans()
            entries = self._entries()
            entries.pop(key, None)
            if body is not None:
                entries[key] = {"name": key[0], "version": key[1], "branch": key[2],
                                "body": body, "fetched_at": time.time()}  # fmt: skip
            kept = sorted(entries.values(), key=lambda e: e.get("fetched_at", 0.0))
            self._write({"format": FORMAT, "entries": kept[-self._limit :]})

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Other processes of the project rewrite the same file: without this lock
        # two workers starting together each keep only their own new entries.
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if fcntl is None:
            yield
            return
        fd = os.open(self.path.with_name(f".{self.path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + LOCK_WAIT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.005)
            yield
        finally:
            # Unlock before closing: a child forked meanwhile holds a copy of fd.
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _clean_orphans(self) -> None:
        # The temporary files of writers killed before their rename (see _write).
        for tmp in self.path.parent.glob(f".{glob.escape(self.path.name)}.*.*"):
            pid = tmp.name[len(self.path.name) + 2 :].split(".")[0]
            if pid.isascii() and pid.isdigit() and not _fork.alive(int(pid)):
                with contextlib.suppress(OSError):
                    tmp.unlink()

    def _entries(self) -> dict[DiskKey, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_bytes())
            return {(e["name"], e["version"], e["branch"]): e for e in data["entries"]}
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return {}

    def _write(self, data: dict[str, Any]) -> None:
        # Write a private temporary file, then rename it over the old one: readers
        # in other processes see the old file or the new one, never half of one.
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(json.dumps(data, separators=(",", ":")).encode())
            os.replace(tmp, self.path)
        finally:
            if tmp.exists():
                tmp.unlink()
