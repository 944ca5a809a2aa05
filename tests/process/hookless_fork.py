"""Run as a script: a fork that skips Python's fork hooks, as uWSGI's does without
``--py-call-uwsgi-fork-hooks``.

The parent logs N records without flushing (its flusher not started: see
main), then forks through libc's
``fork()`` called directly (``ctypes.PyDLL``, which keeps the GIL held), so
no ``os.register_at_fork`` hook runs in either process. The child logs M
records, flushes and leaves with ``os._exit``; the parent then flushes. The
test counts the records at the server: exactly N + M, the parent's never
sent twice. Prints ``child-exit <code> parent-flush <ok>``. Arguments:
base_url api_key N M [shutdown|given] (with ``shutdown`` the child only shuts
the logger down, logging nothing; with ``given`` its first record, the one that
finds the fork, carries the caller's ``record_id="child-given"``).
"""

from __future__ import annotations

import ctypes
import os
import sys
import time

import banyan


def main() -> int:
    base_url, api_key, parent, child = sys.argv[1:5]
    shutdown_only, given = sys.argv[5:] == ["shutdown"], sys.argv[5:] == ["given"]
    logger = banyan.PromptStackLogger(api_key=api_key, base_url=base_url, flush_interval=60)
    # No other thread may run at this fork: a bare fork() skips CPython's own after-fork
    # work too, and a child whose GIL still counts the parent's threads as waiters can
    # deadlock (uWSGI's masters without its fork hooks have the same rule). So the
    # parent's flusher starts only at its flush(), after the fork.
    logger._idle = False
    for i in range(int(parent)):
        logger.log_prompt(input=f"parent {i}", output="o")
    pid = ctypes.PyDLL(None).fork()
    if pid == 0:
        if shutdown_only:  # the child's first call is shutdown(): nothing of the parent's to send
            os._exit(0 if logger.shutdown(timeout=20) else 6)
        for i in range(int(child)):
            own = "child-given" if given and i == 0 else None
            logger.log_prompt(input=f"child {i}", output="o", record_id=own)
        # The first record took the slow path and reset the logger: the queue is the child's.
        code = 4 if logger.get_stats()["queue_size"] > int(child) else 0
        os._exit(code or (0 if logger.flush(timeout=20) else 5))
    deadline = time.monotonic() + 30
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    if done[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(done[1]) if done[0] else -9
    ok = logger.flush(timeout=20)
    print("child-exit", code, "parent-flush", ok)
    return 0 if code == 0 and ok else 1


if __name__ == "__main__":
    sys.exit(main())
