"""multiprocessing Pool (fork, forkserver, spawn) and ProcessPoolExecutor: every record once.

The parent logs records it never flushes before the pool starts; fork
children must not send them, and pool workers, which multiprocessing ends
with ``os._exit`` for fork and forkserver, flush through its exit finalizers.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

import mptasks
import pytest
from prockit import stored_inputs

import banyan

if TYPE_CHECKING:
    from serverproc import Server

pytestmark = pytest.mark.filterwarnings("ignore:This process .* fork:DeprecationWarning")

PARENT, TASKS = 200, 30


def _parent_logs(server: Server) -> None:
    # 60 s interval: nothing is sent before the exit flushes, in the parent or a fork child.
    banyan.configure(api_key=server.api_key, base_url=server.base_url, flush_interval=60)
    for i in range(PARENT):
        banyan.log_prompt(input=f"parent {i}", output="o")


def _assert_every_record_once(server: Server) -> None:
    assert banyan.flush(timeout=20)
    inputs = stored_inputs(server)
    expected = {f"parent {i}": 1 for i in range(PARENT)} | {f"task {n}": 1 for n in range(TASKS)}
    assert inputs == expected
    assert server.summary()["duplicates"] == 0


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_pool_with_each_start_method_delivers_every_record_once(
    server: Server, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recycled Pool workers deliver their own records, never the parent's queued ones."""
    # spawn: the child configures itself from BANYAN_* on its first log_prompt.
    monkeypatch.setenv("BANYAN_API_KEY", server.api_key)
    monkeypatch.setenv("BANYAN_BASE_URL", server.base_url)
    _parent_logs(server)
    options: dict[str, Any] = {}
    if method == "forkserver":
        options = {"initializer": mptasks.configure, "initargs": (server.base_url, server.api_key)}
    context = multiprocessing.get_context(method)
    pool = context.Pool(2, maxtasksperchild=5, **options)
    try:
        pids = pool.map_async(mptasks.log_one, range(TASKS), chunksize=1).get(timeout=60)
        pool.close()
        pool.join()
    finally:
        pool.terminate()
    assert len(set(pids)) >= TASKS // 5
    _assert_every_record_once(server)


def test_process_pool_executor_delivers_every_record_once(server: Server) -> None:
    """ProcessPoolExecutor workers (fork) flush at shutdown; the parent's buffer is sent once."""
    _parent_logs(server)
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(2, mp_context=context) as executor:
        pids = list(executor.map(mptasks.log_one, range(TASKS), timeout=60))
    assert len(set(pids)) <= 2
    _assert_every_record_once(server)
