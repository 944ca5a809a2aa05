"""The line every stress scenario ends with, and the waits they share.

Each scenario prints exactly one ``RESULT {json}`` line as its last line of
output; ``stress.run`` collects them into one table. The JSON holds
``scenario``, ``sent``, ``stored`` (distinct records at the server),
``duplicated`` (records stored more than once), ``dropped`` (counted losses
by ``DropReason`` value), ``spooled``, ``unaccounted`` (sent minus stored
minus dropped), ``ok`` and free-form ``notes``. Importing this module makes
SIGUSR1 print every thread's stack (inherited by forked children), which
``stress.run`` sends to a scenario that overruns.
"""

from __future__ import annotations

import faulthandler
import json
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import banyan

PREFIX = "RESULT "
TESTS = Path(__file__).resolve().parent.parent / "tests"

faulthandler.register(signal.SIGUSR1, all_threads=True)


def use_test_helpers() -> None:
    """Make ``tests/faultproxy.py`` and ``tests/process/*`` importable (prockit, the apps)."""
    for folder in (TESTS, TESTS / "process"):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))


def emit(
    scenario: str,
    *,
    sent: int,
    stored: int,
    duplicated: int,
    dropped: dict[str, int] | None = None,
    spooled: int = 0,
    ok: bool,
    notes: str = "",
    **extra: Any,
) -> int:
    """Print the RESULT line; the exit status (0 only when ``ok`` and nothing is unaccounted)."""
    dropped = {k: v for k, v in (dropped or {}).items() if v}
    unaccounted = sent - stored - sum(dropped.values())
    ok = ok and unaccounted == 0 and duplicated == 0
    row = {"scenario": scenario, "sent": sent, "stored": stored, "duplicated": duplicated,
           "dropped": dropped, "spooled": spooled, "unaccounted": unaccounted, "ok": ok,
           "notes": notes, **extra}  # fmt: skip
    print(PREFIX + json.dumps(row), flush=True)
    return 0 if ok else 1


def skip(scenario: str, why: str) -> int:
    """Print a RESULT line for a scenario that could not run here; exit status 0."""
    print(f"SKIP {scenario}: {why}", flush=True)
    print(PREFIX + json.dumps({"scenario": scenario, "skipped": why, "ok": True}), flush=True)
    return 0


def drain(logger: banyan.PromptStackLogger, timeout: float) -> bool:
    """Flush, then wait (bounded) until the spool is replayed; whether it emptied."""
    use_test_helpers()
    from spoolwait import drain as wait

    return wait(logger, timeout)


def census(server: Any) -> tuple[Counter[str], int, int]:
    """What ``server`` (a ``banyan._localserver.LocalServer``) holds: the stored inputs,
    counted, then the distinct record ids and the ids stored more than once."""
    use_test_helpers()
    from prockit import stored_inputs

    stored, duplicated = stored_once(server.stored_ids())
    return stored_inputs(server), stored, duplicated


def stored_once(ids: list[str]) -> tuple[int, int]:
    """(distinct ids, ids stored more than once) of the server's id list."""
    return len(set(ids)), len(ids) - len(set(ids))
