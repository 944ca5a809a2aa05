"""Memory held per queued record, against the record's encoded size; and 1.0.1's.

Each case runs in a fresh subprocess that builds its logger, logs one
warm-up record, resets the kernel's peak-RSS mark (``/proc/self/clear_refs``),
reads ``VmRSS`` as the baseline, logs 50,000 records and reads ``VmHWM``
(the peak): growth per record = (peak - baseline) / 50,000. Each record is
~1.2 KB: a fresh 500-character input and output and a fresh 5-key metadata
dict per call, as an application produces them (a shared string would cost
1.0.1's queue nothing, since it keeps references). Nothing is sent:

* ``2.x``: base URL a closed loopback port, ``spool_dir=False``, the
  flusher kept from starting (as in caller_cost); the ring holds the
  MessagePack bytes of each record.
* ``1.0.1``: banyan-sdk 1.0.1 in its venv (benchmarks/_compat.py),
  ``background_thread=False`` (so nothing drains its queue),
  ``max_retries=0``, a closed port, ``queue_size=50,000``; its
  ``queue.Queue`` holds a ``LogEntry`` dataclass (strings and a merged
  metadata dict) per record.
* ``control``: the same loop, records built and thrown away, no logger.

The ratio divides growth per record by the record's encoded (MessagePack)
size, the bytes 2.x sends; the target for 2.x is <= 1.3. Three runs per
case; the median is reported.

Run: ``python -m benchmarks.memory`` -> benchmarks/results/memory.json, .png
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks._compat import closed_url, run_script
from benchmarks._plot import RESULTS, bars, write_json

RECORDS = 50_000
RUNS = 3
TARGET = 1.3

# Runs first in every case's process: stdlib only.
PROBE = """
import gc, json, resource, sys

def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) * 1024
    return out

def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False

def fill(log, n):
    pad = "x" * 492
    accepted = 0
    for i in range(n):
        tag = f"{i:08d}"
        meta = {"user_type": "new", "plan": "pro", "turn": i, "score": 4.5, "cached": True}
        accepted += bool(log(tag + pad, pad + tag, meta))
    return accepted

def run(log, n, extra):
    fill(log, 1)
    gc.collect()
    reset = reset_peak()
    base = status()
    accepted = fill(log, n)
    peak = status()
    print(json.dumps({"baseline_rss": base["VmRSS"], "baseline_hwm": base["VmHWM"],
                      "peak_hwm": peak["VmHWM"], "final_rss": peak["VmRSS"],
                      "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "peak_reset": reset, "records": n, "accepted": accepted, **extra()}))
"""

CONTROL = """
run(lambda i, o, m: True, int(sys.argv[1]), dict)
"""

OURS = """
import banyan
url, n = sys.argv[1], int(sys.argv[2])
logger = banyan.PromptStackLogger(api_key="psk_bench", base_url=url, flush_interval=3600,
                                  batch_size=1 << 40, max_queue_bytes=1 << 40, spool_dir=False)
# Keep the flusher from starting: the ring keeps every record.
logger._idle = False
prompt = banyan.PromptData(content="c", version="3", prompt_id="p1", name="bench")
ring = logger._flusher.ring
run(lambda i, o, m: logger.log_prompt(i, o, prompt_data=prompt, model="gpt-4", metadata=m,
                                      duration_ms=12.0), n,
    lambda: {"queued": len(ring), "encoded_bytes_per_record": ring.bytes / len(ring)})
"""

V101 = """
import logging
import banyan
from banyan import PromptData, PromptStackLogger
assert banyan.__version__ == "1.0.1", banyan.__file__
logging.getLogger("banyan").setLevel(logging.CRITICAL)
url, n = sys.argv[1], int(sys.argv[2])
logger = PromptStackLogger(api_key="psk_bench", base_url=url, max_retries=0,
                           background_thread=False, queue_size=n + 1)
prompt = PromptData(prompt_id="p1", name="bench", content="c", version="3", branch="main",
                    project="", enable_logging=True)
queue = logger.log_queue

def json_bytes():
    # The body 1.0.1 would POST for the last record (core.log_prompt_usage's fields).
    e = queue.queue[-1]
    body = {"input": e.input, "output": e.output, "metadata": e.metadata,
            "prompt_id": e.prompt_id, "prompt_name": e.prompt_name, "version": e.version,
            "branch_name": e.branch_name, "model": e.model, "duration_ms": e.duration_ms}
    return {"queued": queue.qsize(), "json_bytes_per_record": len(json.dumps(body).encode())}

run(lambda i, o, m: logger.log_prompt(i, o, prompt_data=prompt, model="gpt-4", metadata=m,
                                      duration_ms=12.0), n, json_bytes)
"""


def _ours(source: str, *args: str) -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", source, *args], capture_output=True, text=True,
                          timeout=120, check=True, cwd=root)  # fmt: skip
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def case(name: str) -> dict[str, Any]:
    """One run of one case in a fresh process, with its growth per record."""
    n = str(RECORDS)
    if name == "control":
        out = _ours(PROBE + CONTROL, n)
    elif name == "2.x":
        out = _ours(PROBE + OURS, closed_url(), n)
    else:
        out = run_script(PROBE + V101, closed_url(), n, timeout=120)
    out["growth_bytes"] = out["peak_hwm"] - out["baseline_rss"]
    out["growth_per_record"] = round(out["growth_bytes"] / RECORDS, 1)
    return dict(out)


def summarise(runs: list[dict[str, Any]], encoded: float) -> dict[str, Any]:
    """The median run's growth per record and its ratio to ``encoded`` bytes."""
    per_record = statistics.median(r["growth_per_record"] for r in runs)
    return {"growth_per_record": per_record, "x_encoded": round(per_record / encoded, 3),
            "runs": runs}  # fmt: skip


def plot(result: dict[str, Any]) -> None:
    """Bytes per queued record: the wire sizes beside each case's RSS growth."""
    encoded, cases = result["encoded_bytes_per_record"], result["cases"]
    rows = [("encoded record\n(MessagePack, 2.x)", "wire size", encoded),
            ("1.0.1 JSON body", "wire size", result["v101_json_bytes_per_record"]),
            ("2.x queue\n(RSS growth)", "2.x", cases["2.x"]["growth_per_record"]),
            ("1.0.1 queue\n(RSS growth)", "1.0.1", cases["1.0.1"]["growth_per_record"]),
            ("control\n(no queue)", "control", cases["control"]["growth_per_record"])]  # fmt: skip
    bars(RESULTS / "memory.png", [r[0] for r in rows], [r[2] for r in rows],
         groups=[r[1] for r in rows], line=(TARGET * encoded, f"{TARGET} x encoded size"),
         ylabel="bytes per queued record",
         title=f"Peak RSS growth, {RECORDS:,} ~1.2 KB records queued, none sent")  # fmt: skip


def main() -> None:
    """Run every case ``RUNS`` times, interleaved, and write the JSON and PNG."""
    names = ("control", "2.x", "1.0.1")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for _ in range(RUNS):
        for name in names:
            runs[name].append(case(name))
            assert runs[name][-1]["accepted"] == RECORDS, runs[name][-1]
    encoded = statistics.median(r["encoded_bytes_per_record"] for r in runs["2.x"])
    result = {
        "records": RECORDS, "runs_per_case": RUNS, "target_x_encoded": TARGET,
        "encoded_bytes_per_record": round(encoded, 1),
        "v101_json_bytes_per_record": runs["1.0.1"][0]["json_bytes_per_record"],
        "cases": {name: summarise(runs[name], encoded) for name in names},
    }  # fmt: skip
    path = write_json("memory", result)
    plot(result)
    for name, row in result["cases"].items():
        print(f"{name:8} {row['growth_per_record']:8,.1f} B/record  {row['x_encoded']:.3f} x "
              f"encoded ({encoded:,.1f} B)")  # fmt: skip
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
