"""Run as a script: configure, log once, then fork every 10 ms, in a fresh interpreter.

The parent's flusher thread is then still importing httpx and opening its
first connection when the children are forked (what gunicorn --preload does
to an app that logs at import). A fork while that thread was inside OpenSSL
building a TLS context used to hang the child at its own first context, so
every context built is recorded: only the main thread of the parent may build
one. Prints ``parent-ok children-ok`` and exits 0 when every child delivered
its records and no other thread built a context; the test counts the records
at the server. Arguments: base_url api_key children records_per_child.
"""

from __future__ import annotations

import os
import ssl
import sys
import threading
import time

import banyan

BUILT: list[tuple[int, str]] = []


def _record_tls_contexts() -> None:
    new = ssl.SSLContext.__new__

    def recording_new(cls: type[ssl.SSLContext], *args: object, **kwargs: object) -> ssl.SSLContext:
        BUILT.append((os.getpid(), threading.current_thread().name))
        return new(cls, *args, **kwargs)  # type: ignore[call-overload, no-any-return]

    ssl.SSLContext.__new__ = recording_new  # type: ignore[method-assign, assignment]


def main() -> int:
    _record_tls_contexts()
    parent = os.getpid()
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
            ok = banyan.flush(timeout=15)
            os._exit(0 if ok and not [b for b in BUILT if b[0] != parent] else 1)
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
    off_main = [name for _, name in BUILT if name != "MainThread"]
    if off_main:
        print("TLS contexts built on", off_main)
    print(
        "parent-ok" if ok else "parent-failed", "children-ok" if not failed else f"{failed}-failed"
    )
    return 0 if ok and not failed and not off_main else 1


if __name__ == "__main__":
    sys.exit(main())
