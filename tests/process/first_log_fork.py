"""Run as a script: configure, log once, then fork every 10 ms, in a fresh interpreter.

The parent's flusher thread is then still importing httpx and opening its
first connection when the children are forked (what gunicorn --preload does
to an app that logs at import). Prints ``parent-ok children-ok``
and exits 0 when every child delivered its records; the test counts them at
the server. Arguments: base_url api_key children records_per_child.
"""

from __future__ import annotations

import os
import sys
import time

import banyan


def main() -> int:
    base_url, api_key, children, per_child = sys.argv[1:5]
    banyan.configure(api_key=api_key, base_url=base_url, flush_interval=0.01)
    pids = []
    banyan.log_prompt(input="parent", output="o")
    for n in range(int(children)):
        time.sleep(0.01)
        pid = os.fork()
        if pid == 0:
            for i in range(int(per_child)):
                banyan.log_prompt(input=f"child {n} {i}", output="o")
            os._exit(0 if banyan.flush(timeout=15) else 1)
        pids.append(pid)
    deadline = time.monotonic() + 30
    failed = 0
    for pid in pids:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                failed += os.waitstatus_to_exitcode(status) != 0
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                failed += 1
                break
            time.sleep(0.01)
    ok = banyan.flush(timeout=15)
    print(
        "parent-ok" if ok else "parent-failed", "children-ok" if not failed else f"{failed}-failed"
    )
    return 0 if ok and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
