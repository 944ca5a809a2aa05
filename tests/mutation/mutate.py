"""`make mutate`: mutation testing of the core modules, one module at a time (mutmut 3.8).

Each module's mutants run against that module's fast tests only (``MODULES``), in
a fresh ``mutants/`` copy of the tree, two at a time; the figures go to
docs/mutation.json. A survivor that no test can tell apart from the real code is
listed in equivalent.json beside this file, with its reason, and is not counted.

    python tests/mutation/mutate.py [MODULE ...]     # every module by default
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "docs" / "mutation.json"
EQUIVALENT = Path(__file__).with_name("equivalent.json")
U = "tests/unit/"

#: module -> (its source file, the fast tests its mutants run against).
MODULES: dict[str, tuple[str, list[str]]] = {
    "ledger": (
        "banyan/_ledger.py",
        [
            U + "test_ledger.py",
            U + "test_ledger_mutants.py",
            U + "test_stats_snapshot.py",
            U + "test_flusher_core.py",
            U + "test_shutdown_accounting.py",
            U + "test_delivery.py",
            U + "test_delivery_paths.py",
            U + "test_spool.py",
        ],
    ),
    "pipeline": (
        "banyan/_pipeline.py",
        [
            U + "test_pipeline_mutants.py",
            U + "test_shutdown_accounting.py",
            U + "test_flusher.py",
            U + "test_log_prompt.py",
            U + "test_default.py",
            U + "test_spool.py",
            U + "test_spool_disk.py",
            U + "test_ring.py",
            U + "test_ring_bound.py",
            U + "test_controls.py",
            U + "test_delivery.py",
            U + "test_fork_module.py",
        ],
    ),
    "slowpath": (
        "banyan/_slowpath.py",
        [
            U + "test_slowpath_mutants.py",
            U + "test_log_prompt.py",
            U + "test_log_score.py",
            U + "test_ring_bound.py",
            U + "test_default.py",
            U + "test_before_send_kinds.py",
            U + "test_fork_module.py",
            U + "test_flusher.py",
            # Under mutmut's stats run the signal handler's log_prompt outlasts --timeout=20.
            "--deselect",
            U + "test_log_prompt.py::test_log_prompt_from_a_signal_handler_"
            "neither_corrupts_nor_hangs",
        ],
    ),
    "promptcalls": (
        "banyan/_promptcalls.py",
        [
            U + "test_promptcalls_mutants.py",
            U + "test_prompts.py",
            U + "test_prompts_cache.py",
            U + "test_controls.py",
            U + "test_default.py",
            U + "test_default_async.py",
            U + "test_routing_vectors.py",
        ],
    ),
    "ring": (
        "banyan/_ring.py",
        [U + "test_ring.py", U + "test_ring_bound.py", U + "test_ring_edges.py"],
    ),
    "flusher": (
        "banyan/_flusher.py",
        [
            U + "test_flusher_core.py",
            U + "test_flusher_mutants.py",
            U + "test_flusher.py",
            U + "test_delivery.py",
            U + "test_spool.py",
        ],
    ),
    "delivery": (
        "banyan/_delivery.py",
        [
            U + "test_delivery.py",
            U + "test_delivery_paths.py",
            U + "test_delivery_mutants.py",
            U + "test_backoff.py",
            U + "test_retry_after.py",
        ],
    ),
    "failures": (
        "banyan/_failures.py",
        [
            U + "test_delivery.py",
            U + "test_delivery_paths.py",
            U + "test_delivery_mutants.py",
            U + "test_fanout.py",
            U + "test_retry_after.py",
        ],
    ),
    "transport": (
        "banyan/_transport.py",
        [
            U + "test_transport.py",
            U + "test_transport_requests.py",
            U + "test_transport_mutants.py",
            U + "test_retry_after.py",
        ],
    ),
    "legacybody": (
        "banyan/_legacybody.py",
        [
            U + "test_delivery_paths.py",
            U + "test_delivery_mutants.py",
            U + "test_legacybody_mutants.py",
            U + "test_fanout.py",
        ],
    ),
    "segment": ("banyan/_segment.py", [U + "test_segment_format.py", U + "test_spool.py"]),
    "spool": (
        "banyan/_spool.py",
        [
            U + "test_spool_status.py",
            U + "test_spool.py",
            U + "test_spool_sync.py",
            U + "test_spool_edges.py",
        ],
    ),
    "spoolclaims": (
        "banyan/_spoolclaims.py",
        [
            U + "test_spool_status.py",
            U + "test_spool.py",
            U + "test_spool_sync.py",
            U + "test_spool_edges.py",
            U + "test_spool_disk.py",
        ],
    ),
    "routing": (
        "banyan/_routing.py",
        [U + "test_routing.py", U + "test_routing_edges.py", U + "test_routing_vectors.py"],
    ),
    "stats": (
        "banyan/_stats.py",
        [
            U + "test_stats_snapshot.py",
            U + "test_stats_mutants.py",
            U + "test_log_prompt.py",
            U + "test_delivery.py",
        ],
    ),
    "fork": (
        "banyan/_fork.py",
        [
            U + "test_fork_hooks.py",
            U + "test_fork_module.py",
            U + "test_fork_mutants.py",
            "tests/process/test_fork_hook.py",
        ],
    ),
    "record": (
        "banyan/_record.py",
        [U + "test_record_encoding.py", U + "test_log_prompt.py", U + "test_testing.py"],
    ),
    "ingest": (
        "banyan/server/_ingest.py",
        [
            "tests/server/test_ingest_inprocess.py",
            "tests/server/test_decode.py",
            "tests/server/test_storage.py",
            U + "test_testing.py",
            # Hypothesis reports it flaky under mutmut's trampolines (stats collection fails).
            "--deselect",
            "tests/server/test_decode.py::test_fast_path_agrees_with_the_record_by_record_path",
        ],
    ),
    "logs": (
        "banyan/server/_logs.py",
        [
            "tests/server/test_logs_inprocess.py",
            "tests/server/test_storage.py",
            U + "test_testing.py",
        ],
    ),
}

#: Runs in a fresh interpreter in the tree to mutate: mutmut's settings narrowed to one
#: file and its tests (pyproject's [tool.mutmut] holds the rest), then ``mutmut run``.
BOOT = """
import sys
from mutmut import configuration
from mutmut.__main__ import cli
settings = configuration.config()
settings.only_mutate = sys.argv[1].split(",")
settings.pytest_add_cli_args_test_selection = sys.argv[4:]
cli(["run", "--max-children", sys.argv[3], *sys.argv[2].split(",")])
"""


def mutate(
    tree: Path, files: list[str], names: list[str], tests: list[str], limit: float
) -> dict[str, tuple[str, str]]:
    """Run mutmut in ``tree`` on ``names`` (globs) of ``files``: each mutant's status and
    change (its diff's changed lines)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code

    shutil.rmtree(tree / "mutants", ignore_errors=True)
    jobs = os.environ.get("MUTATE_JOBS", "2")
    argv = [sys.executable, "-c", BOOT, ",".join(files), ",".join(names), jobs, *tests]
    with (
        (tree / "mutants.log").open("wb") as log,
        subprocess.Popen(
            argv, cwd=tree, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        ) as proc,
    ):
        try:
            proc.wait(limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    found: dict[str, tuple[str, str]] = {}
    here = Path.cwd()
    os.chdir(tree)  # mutmut reads its mutants/ relative to the working directory
    try:
        for file in files:
            meta = Path("mutants", file + ".meta")
            if meta.exists():
                codes = json.loads(meta.read_text())["exit_code_by_key"]
                for name, code in codes.items():
                    diff = get_diff_for_mutant(name, path=file).splitlines()[3:]
                    change = " / ".join(line.strip() for line in diff if line[:1] in "+-")
                    found[name] = (status_by_exit_code[code], change)
    finally:
        os.chdir(here)
    return found


#: The statuses a module's entry counts (mutmut's others count as "not checked").
_COUNTED = ("killed", "survived", "timeout", "no tests", "not checked")


def _function(name: str) -> str:
    """A mutant's function: its name without mutmut's number."""
    return name.rpartition("__mutmut_")[0]


def _equivalents() -> set[tuple[str, str]]:
    """equivalent.json as (function, change) pairs: an edit elsewhere in the function may
    renumber a mutant, the same change in the same function is the same mutant."""
    known: dict[str, dict[str, str]] = json.loads(EQUIVALENT.read_text())
    return {(_function(name), entry["change"]) for name, entry in known.items()}


def summarise(
    file: str, tests: list[str], found: dict[str, tuple[str, str]], seconds: float
) -> dict[str, Any]:
    """One module's figures; the score counts timeouts as caught, equivalents not at all.

    A mutant is equivalent while its function holds the change recorded beside a reason
    (mutmut numbers mutants by position: an edit of the code may renumber them).
    """
    known = _equivalents()
    counts = dict.fromkeys(_COUNTED, 0)
    equivalent, survivors = 0, {}
    for name, (status, change) in sorted(found.items()):
        if (_function(name), change) in known:
            equivalent += 1
            continue
        counts[status if status in counts else "not checked"] += 1
        if status in ("survived", "no tests", "not checked"):
            survivors[name] = f"{status}: {change}"
    judged = len(found) - equivalent
    caught = counts["killed"] + counts["timeout"]
    return {
        "file": file,
        "tests": tests,
        "mutants": len(found),
        **{key.replace(" ", "_"): value for key, value in counts.items()},
        "equivalent": equivalent,
        "score": round(caught / judged, 4) if judged else None,
        "survivors": survivors,
        "seconds": round(seconds),
    }


def rejudge(entry: dict[str, Any]) -> None:
    """Apply equivalent.json to a module's stored survivors (after it was edited)."""
    known = _equivalents()
    for name, line in list(entry["survivors"].items()):
        status, change = line.split(": ", 1)
        if (_function(name), change) in known:
            del entry["survivors"][name]
            entry[status.replace(" ", "_")] -= 1
            entry["equivalent"] += 1
    judged = entry["mutants"] - entry["equivalent"]
    entry["score"] = round((entry["killed"] + entry["timeout"]) / judged, 4) if judged else None


def recheck(entry: dict[str, Any], found: dict[str, tuple[str, str]]) -> None:
    """Count the stored survivors of a module run again (``found``): those now killed or
    timed out move to their new status. Only for code unchanged since the full run, where
    mutmut's names still mean the same mutants."""
    for name, (status, change) in found.items():
        if name not in entry["survivors"]:
            continue  # mutmut lists every mutant of the file, run or not
        old = entry["survivors"][name].split(": ", 1)[0]
        entry[old.replace(" ", "_")] -= 1
        entry[status.replace(" ", "_") if status in _COUNTED else "not_checked"] += 1
        del entry["survivors"][name]
        if status not in ("killed", "timeout"):
            entry["survivors"][name] = f"{status}: {change}"
    entry["rechecked"] = time.strftime("%Y-%m-%d", time.gmtime())
    rejudge(entry)


def main(argv: list[str]) -> int:
    """Run the modules named in ``argv`` (all by default); ``--rejudge`` only re-reads
    equivalent.json into the report; ``--again MODULE ...`` runs only their stored
    survivors again (after new tests, on unchanged code)."""
    report = json.loads(REPORT.read_text()) if REPORT.exists() else {"modules": {}}
    if argv == ["--rejudge"]:
        for entry in report["modules"].values():
            rejudge(entry)
        REPORT.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        return 0
    if argv[:1] == ["--again"]:
        for module in argv[1:]:
            entry = report["modules"][module]
            rejudge(entry)
            file, tests = MODULES[module]
            found = mutate(ROOT, [file], list(entry["survivors"]), tests, 1800)
            recheck(entry, found)
            REPORT.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
            print(f"{module:10} {len(entry['survivors']):3} left score {entry['score']}")
        return 0
    chosen = argv or list(MODULES)
    report.update(tool=f"mutmut {version('mutmut')}", command="make mutate")
    limit = float(os.environ.get("MUTATE_LIMIT", "1800"))
    for module in chosen:
        file, tests = MODULES[module]
        dotted = file.removesuffix(".py").replace("/", ".")
        start = time.monotonic()
        found = mutate(ROOT, [file], [dotted + ".*"], tests, limit)
        entry = summarise(file, tests, found, time.monotonic() - start)
        report["modules"][module] = entry
        REPORT.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(
            f"{module:10} {entry['killed']:4} killed {entry['timeout']:3} timeout "
            f"{len(entry['survivors']):3} left {entry['equivalent']:3} equivalent "
            f"score {entry['score']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
