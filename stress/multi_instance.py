"""Three ``banyan serve`` instances on one PostgreSQL database, one SIGKILLed mid-load (#17).

Starts its own PostgreSQL (initdb in a temporary directory, loopback), three
instances on one database and ``--clients`` real clients in two projects,
each through its own proxy to one instance (a load balancer that can move it).
After a third of the load instance 0 and its worker are SIGKILLed, its
clients move to instance 1 (unanswered batches are retried there), and it is
started again on its port. Then each client drains its spool, and every
record is counted at the database by input and by id.

Prints sent / stored / duplicated / dropped / spooled and exits 1 on any
mismatch: a record missing or stored twice, a project's counters unequal to
its rows, or a spool left undrained. Skips when PostgreSQL cannot be started.

Run: ``python -m stress.multi_instance [--clients 6] [--records 10000]``
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from stress._result import emit, skip, use_test_helpers

if TYPE_CHECKING:
    from tests.server.store import pgfleet


def run(tmp: Path, clients: int, records: int) -> int:
    """The scenario on a PostgreSQL of its own; the exit status."""
    use_test_helpers()
    from tests.pgserver import PgServer, PgUnavailable
    from tests.server.store import pgfleet

    try:
        pg = PgServer()
        pg.start()
    except (PgUnavailable, OSError) as exc:
        return skip("multi_instance", f"no PostgreSQL here: {exc}")
    servers = []
    try:
        url = pg.create_database("multi")
        servers = pgfleet.start_instances(tmp, url, 3)
        created = servers[1].post("/api/v2/projects", json={"name": "second"}).json()
        keys = [servers[0].api_key, created["api_key"]]
        load = pgfleet.spread_load(servers, keys, tmp, clients=clients, records=records)
        return report(load, pgfleet.inputs_at(url), pgfleet.ids_at(url), pgfleet.counters_at(url))
    finally:
        pgfleet.stop_all(servers)
        pg.remove()


def report(load: pgfleet.Load, inputs: Counter[str], ids: dict[str, Counter[str]],
           counters: dict[str, dict[str, int]]) -> int:  # fmt: skip
    """Print the accounting (RESULT line); 1 on a mismatch."""
    sent = {f"{name} {i}" for name, count in load.sent.items() for i in range(count)}
    rows = sum(sum(per_id.values()) for per_id in ids.values())
    wrong = [p for p, per_id in ids.items() if counters[p]["stored"] != sum(per_id.values())]
    duplicated = sum(n - 1 for n in inputs.values() if n > 1)
    print(f"projects={len(ids)} rows={rows} counters_wrong={wrong} drained={load.drained}")
    return emit(
        "multi_instance", sent=len(sent), stored=len(sent & set(inputs)), duplicated=duplicated,
        dropped={"logs_dropped": sum(load.dropped.values())}, spooled=load.spooled,
        ok=load.drained and not wrong and set(inputs) <= sent and rows == len(inputs),
        notes=f"3 instances, 1 SIGKILLed; {sum(counters[p]['duplicates'] for p in ids):,} "
              "duplicates answered",
    )  # fmt: skip


def main() -> int:
    """Parse the arguments and run in a temporary directory."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--records", type=int, default=10_000, help="per client")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="multi-instance-"))
    try:
        return run(tmp, args.clients, args.records)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
