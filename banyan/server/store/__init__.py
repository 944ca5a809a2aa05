"""The storage interface of ``banyan serve``: one Protocol, one engine per database.

Handlers speak to a :class:`Store`, never to a driver. Each method is one unit
of work (one transaction): a handler checks its request, calls one method and
shapes the response. Engines raise only the errors below::

    StoreError
     ├── StoreUnavailable   the database cannot be reached now (503 + Retry-After)
     ├── NotFound           a named project, prompt, branch or experiment is absent (404)
     ├── Conflict           a name, label or running experiment is taken (409)
     └── SchemaError        the database was made by a newer server, or is not ours

Importing this module loads no database driver: ``store.postgres`` imports
psycopg, and only ``banyan serve --db postgresql://...`` imports it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

if TYPE_CHECKING:
    from collections.abc import Callable

    from banyan._routing import Experiment
    from banyan.server._auth import Principal
    from banyan.server._idempotency import Answer, Remembered
    from banyan.server._ingest import Decoded
    from banyan.server.analysis import VariantAggregate
    from banyan.server.store.series import FirstSeen

#: The database ``open_store()`` opens when it is given none: a URL or a path.
DATABASE_URL_ENV = "BANYAN_DATABASE_URL"

#: The database of ``open_store()`` when neither an argument nor the environment names one.
DEFAULT_DATABASE = "banyan.db"
#: PostgresStore's connections per pool (one pool per worker): ``banyan serve --db-pool-size``.
POOL_SIZE_ENV = "BANYAN_DB_POOL_SIZE"
DEFAULT_POOL_SIZE = 8

#: Seconds a client is told to wait (Retry-After) when the database is down.
RETRY_AFTER = 1.0

#: A prompt (id, name, enable_logging, metadata, created_at) or a version
#: (id, prompt_id, branch, version, seq, content, message, metadata, created_at):
#: the JSON objects the v2 endpoints return.
Item = dict[str, Any]


class StoreError(Exception):
    """Root of the errors a store raises."""


class StoreUnavailable(StoreError):
    """The database cannot be reached; nothing was stored. Retry after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: float = RETRY_AFTER) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotFound(StoreError):
    """A project, prompt, branch, version or experiment named in the call does not exist."""


class Conflict(StoreError):
    """The call would take a name, version label or running slot already taken."""


class SchemaError(StoreError):
    """The database's schema is newer than this server's, or was not made by banyan."""


@dataclass(frozen=True)
class Bootstrap:
    """What ``Store.bootstrap`` did: the default project, a key to print, whether it created."""

    project_id: str
    key: str | None
    created: bool


@dataclass(frozen=True)
class Page:
    """One page of GET /api/v2/logs: filters (see ``_logs.FILTERS``), cursor, limit, order."""

    filters: dict[str, Any]
    cursor: str | None
    limit: int
    descending: bool


#: (version, branch_name, experiment_id, experiment_version_id, duration_ms, model)
StatsRow = tuple[Any, ...]


def experiment_item(
    config: Experiment, *, prompt_id: str, prompt: str, branch: str, status: str,
    created_at: float,
) -> Item:  # fmt: skip
    """An experiment as the v2 endpoints return it (with the names 1.0.1 clients read)."""
    cfg = msgspec.to_builtins(config)
    return {**cfg, "prompt_id": prompt_id, "prompt": prompt, "branch": branch, "status": status,
            "created_at": created_at, "experiment_id": config.id, "sticky_type": config.sticky_key,
            "versions": cfg["variants"]}  # fmt: skip


_SECRET = re.compile(r"(?i)(://[^:/@?#]*:)[^@/?#]*(@)|(password\s*=\s*)('[^']*'|[^\s&]*)")


def redact(url: str) -> str:
    """``url`` (a URL or a key=value conninfo) with its password replaced by ``***``."""
    return _SECRET.sub(lambda m: f"{m[1]}***{m[2]}" if m[1] else f"{m[3]}***", url)


class Store(Protocol):
    """Everything the handlers read and write; one method is one transaction.

    docs/storage.md maps each handler to the methods it calls.
    """

    async def close(self) -> None:
        """Finish work in flight and release every connection."""

    # Projects and keys; keys are given and looked up as sha256 hex digests.
    async def bootstrap(self, key: str | None) -> Bootstrap:
        """Make sure the default project and an admin key exist (see _auth.bootstrap)."""

    async def principal(self, digest: str) -> Principal | None:
        """Who the key with this digest speaks for, or None."""

    async def project(self, project_id: str) -> Item | None:
        """A project (id, name, created_at), or None."""

    async def create_project(self, name: str, digest: str, prefix: str) -> Item:
        """A new project and its first (non-admin) key; Conflict when the name is taken."""

    async def add_key(
        self, project_id: str, digest: str, prefix: str, *, admin: bool, label: str = ""
    ) -> None:
        """Store a key digest for a project, unless it is stored already."""

    async def revoke_key(self, project_id: str, digest: str) -> None:
        """Delete a project's key by digest; NotFound when the project has no such key."""

    # Prompts, branches and versions.
    async def prompt(self, project_id: str, name: str) -> Item | None:
        """A prompt by name, or None."""

    async def prompt_by_id(self, project_id: str, prompt_id: str) -> Item | None:
        """A prompt by id, or None."""

    async def prompts(self, project_id: str) -> list[Item]:
        """Every prompt of a project by name, each with its ``branches``."""

    async def create_prompt(self, project_id: str, name: str, body: Item) -> Item:
        """A prompt and its first version from a checked body (_prompts.version_body).

        Returns the prompt with its ``branches``; Conflict when the name is taken.
        """

    async def update_prompt(
        self, project_id: str, prompt_id: str, enable: bool | None, metadata: Item | None
    ) -> None:
        """Set a prompt's logging switch and metadata (None leaves a field alone)."""

    async def delete_prompt(self, project_id: str, prompt_id: str) -> None:
        """Delete a prompt with its versions and experiments; NotFound when absent."""

    async def add_version(
        self,
        prompt_id: str,
        branch: str,
        content: str,
        *,
        version: str | None = None,
        message: str = "",
        metadata: Item | None = None,
    ) -> Item:
        """Append a version (the next number when ``version`` is None); Conflict if taken."""

    async def version(self, prompt_id: str, branch: str, version: str | None) -> Item | None:
        """A version of a branch, the latest when ``version`` is None."""

    async def versions(self, prompt_id: str, branch: str | None) -> list[Item]:
        """A prompt's versions (of one branch when given), by branch then age."""

    async def branches(self, prompt_id: str) -> list[Item]:
        """Each branch: name, latest_version, versions (a count), by name."""

    async def create_branch(self, prompt_id: str, branch: str, source: str) -> Item:
        """Start ``branch`` at ``source``'s latest version; Conflict, or NotFound for source."""

    # Experiments.
    async def create_experiment(
        self, project_id: str, prompt_id: str, branch: str, config: Experiment, *, start: bool
    ) -> Item:
        """Store a validated experiment (started when ``start``); returns ``experiment()``."""

    async def experiment(self, project_id: str, exp_id: str) -> Item:
        """An experiment as the v2 endpoints return it; NotFound when absent."""

    async def experiment_config(self, project_id: str, exp_id: str) -> Experiment:
        """The routing configuration of an experiment, variant content included."""

    async def running_experiment(
        self, project_id: str, prompt_id: str, branch: str
    ) -> Experiment | None:
        """The experiment running on a prompt's branch, if any."""

    async def experiments(self, project_id: str, prompt: str | None) -> list[Item]:
        """A project's experiments (of one prompt name when given), oldest first."""

    async def set_experiment_status(self, project_id: str, exp_id: str, status: str) -> Item:
        """Start ("running") or stop ("stopped"); Conflict when another runs on the branch."""

    async def ship_experiment(
        self, project_id: str, exp_id: str, version: str, message: str
    ) -> Item:
        """Stop the experiment and append a copy of its branch's ``version`` (content,
        metadata) with ``message``; returns the new version. Conflict if it is gone."""

    # Logs, counters, aggregates.
    async def ingest(self, project_id: str, batch: Decoded, single: int) -> int:
        """Store a decoded batch once per record id; returns how many rows were new.

        A row the database refuses moves to ``batch.rejected``. The counters
        (stored, duplicates, rejected, batches, single) move in the same transaction.
        """

    async def ingest_once(
        self, project_id: str, batch: Decoded, key: str, fingerprint: str,
        answer: Callable[[int], Answer],
    ) -> Remembered:  # fmt: skip
        """Ingest a single record under an Idempotency-Key, once per key and window.

        A key remembered within ``_idempotency.WINDOW`` returns what it keeps
        (fingerprint, answer) and stores nothing; else the record is stored
        (single=1), ``answer(inserted)`` is remembered with ``fingerprint`` in
        the same transaction, and returned.
        """

    async def log_ids(self, project_id: str) -> list[str]:
        """Every stored record id of a project, oldest first.

        SQLite lists them in the order stored; PostgreSQL, where several
        instances store at once, by ts then id.
        """

    async def logs_page(self, project_id: str, page: Page) -> tuple[list[bytes], str | None]:
        """One page of stored records (msgpack blobs) and the cursor of the next, if any.

        SQLite pages in the order stored, PostgreSQL by ts then id. A cursor
        the engine did not make raises ValueError.
        """

    async def summary(self, project_id: str) -> dict[str, int]:
        """The counters: stored, duplicates, rejected, batches, single."""

    async def stats_rows(self, project_id: str, prompt_name: str) -> list[StatsRow]:
        """The logs of one prompt, as rows _stats.grouped(rows, 4) aggregates."""

    async def subject_series(self, project_id: str, exp_id: str) -> list[FirstSeen]:
        """Per variant and UTC day, the subjects whose first record (by ts) fell on it, in
        day order: the results page's "subjects over time" (store/series.py)."""

    async def prune(self, before: float) -> dict[str, int]:
        """Drop logs and scores whose ts is before ``before`` (epoch seconds); returns
        the rows removed per table (``{"logs": n, "scores": m}``).

        An engine that partitions by time drops whole partitions and keeps the
        rows of the one that straddles ``before``. Counters are not changed.
        """

    # Experiment results (#18, outcomes): the per-subject sums the analysis reads.
    async def result_aggregates(
        self, project_id: str, exp_id: str, *, alpha: float = 0.05, tau: float | None = None
    ) -> list[VariantAggregate]:
        """Per variant of an experiment's logs and scores: subjects, records, latency
        percentiles with their intervals at ``alpha`` (sequential: ``tau``), and the
        per-subject sums of latency, tokens, cost and every score (docs/statistics.md,
        section 2), computed in the database in memory bounded by the number of subjects."""


_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def pool_size() -> int:
    """$BANYAN_DB_POOL_SIZE, else DEFAULT_POOL_SIZE; ValueError unless a positive integer."""
    text = os.environ.get(POOL_SIZE_ENV, str(DEFAULT_POOL_SIZE))
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size < 1:
        raise ValueError(f"{POOL_SIZE_ENV}={text!r} is not a positive integer")
    return size


async def open_store(target: str | os.PathLike[str] | None = None, **options: Any) -> Store:
    """Open the store ``target`` names, creating or upgrading its schema.

    A ``postgresql://`` (or ``postgres://``) URL opens PostgresStore (psycopg is
    imported only then); any other ``scheme://`` is refused with ValueError; a
    path opens SqliteStore. Without ``target``, $BANYAN_DATABASE_URL names it,
    else ``banyan.db``. ``options`` go to the engine's ``open``. ImportError,
    naming the ``postgres`` extra, when psycopg is not installed.
    """
    if target is None:
        target = os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE
    text = os.fspath(target)
    if text.startswith(_POSTGRES_SCHEMES):
        try:
            from banyan.server.store.postgres import PostgresStore
        except ImportError as exc:
            raise ImportError(f"PostgreSQL needs its driver: pip install 'banyan-sdk[postgres]'"
                              f" ({exc})") from None  # fmt: skip
        return await PostgresStore.open(text, **options)
    if "://" in text:
        raise ValueError(f"no storage engine for {redact(text)!r}: use postgresql:// or a path")
    from banyan.server.store.sqlite import SqliteStore

    return await SqliteStore.open(Path(text), **options)
