"""The hot path: what log_prompt encodes, snapshots, coerces and never raises."""

from __future__ import annotations

import collections
import datetime
import decimal
import json
import logging
import os
import subprocess
import sys
import types
import uuid
from typing import Any
from unittest import mock

import msgspec
import pytest
from contention import contended
from fakes import MakeLogger

import banyan
from banyan import _fork
from banyan._delivery import MAX_RECORD_BYTES
from banyan._pipeline import Pipeline
from banyan._record import (
    MAX_ID_LENGTH,
    MAX_LISTED_ITEMS,
    SCRATCH_MAX,
    Encoded,
    IdSource,
    Record,
    scratch,
)

decode = msgspec.msgpack.Decoder(Record).decode


def queued(logger: banyan.PromptStackLogger) -> list[Record]:
    """Decode what sits in the logger's ring (without sending it)."""
    return [decode(item) for item in list(logger._flusher.ring._items)]


def quiet(make_logger: MakeLogger, **options: Any) -> banyan.PromptStackLogger:
    """A logger whose flusher never starts, so records stay in the ring."""
    logger, _ = make_logger(**options)
    logger._idle = False
    return logger


def test_record_fields_come_from_prompt_data(make_logger: MakeLogger) -> None:
    """prompt_data supplies ids, version, branch and experiment context."""
    logger = quiet(make_logger)
    prompt = banyan.PromptData(
        content="c", version="2", branch="dev", prompt_id="p1", name="greet",
        experiment_id="exp_1", experiment_version_id="var_b", sticky_key="user_id",
        sticky_value="u1",
    )  # fmt: skip
    assert logger.log_prompt(input="i", output="o", prompt_data=prompt, model="m", duration_ms=5)
    (record,) = queued(logger)
    assert (record.prompt_id, record.prompt_name, record.version, record.branch_name) == (
        "p1", "greet", "2", "dev",
    )  # fmt: skip
    assert (record.experiment_id, record.experiment_version_id) == ("exp_1", "var_b")
    assert (record.sticky_key, record.sticky_value, record.model) == ("user_id", "u1", "m")


def test_explicit_arguments_win_over_prompt_data(make_logger: MakeLogger) -> None:
    """prompt_name/version passed explicitly override the prompt's own fields."""
    logger = quiet(make_logger)
    prompt = banyan.PromptData(content="c", version="2", prompt_id="p1", name="greet")
    logger.log_prompt("i", "o", prompt_data=prompt, version="7")
    (record,) = queued(logger)
    assert (record.version, record.prompt_name, record.prompt_id) == ("7", "greet", "p1")


def test_metadata_is_snapshotted_at_call_time(make_logger: MakeLogger) -> None:
    """Mutating metadata after log_prompt returns does not change what is logged."""
    logger = quiet(make_logger)
    metadata: dict[str, Any] = {"user": "a", "tags": ["x"]}
    logger.log_prompt("i", "o", metadata=metadata)
    metadata["user"] = "b"
    metadata["tags"].append("y")
    (record,) = queued(logger)
    assert record.metadata == {"user": "a", "tags": ["x"]}


def test_ids_are_unique_and_not_uuid4(make_logger: MakeLogger) -> None:
    """Every record gets its own IdSource id (prefix-counter, not a UUID)."""
    logger = quiet(make_logger)
    for n in range(100):
        logger.log_prompt(f"i{n}", "o")
    ids = [r.id for r in queued(logger)]
    assert len(set(ids)) == 100
    assert all(len(i) < 36 and "-" in i for i in ids)


def test_id_source_reset_gives_a_new_prefix() -> None:
    """After reset() (a forked child) no id shares the parent's prefix; ids stay short text."""
    ids = IdSource()
    parent = {ids.next() for _ in range(3)}
    ids.reset()
    child = ids.next()
    assert isinstance(child, str)
    assert len(child) <= MAX_ID_LENGTH
    assert all(child.rsplit("-", 1)[0] != p.rsplit("-", 1)[0] for p in parent)


def test_a_wiped_credit_takes_the_slow_path_without_resetting_the_logger(
    make_logger: MakeLogger,
) -> None:
    """credit[0] reading 0 (as in a forked child) makes the next record ask getpid(); the
    same process keeps its queue and gets a fresh credit."""
    logger = quiet(make_logger)
    logger.log_prompt("a", "o")
    assert logger._flusher.ring.credit[0] > 0
    logger._flusher.ring.credit[0] = 0  # what the wiped page reads in a forked child
    logger.log_prompt("b", "o")
    assert [r.input for r in queued(logger)] == ["a", "b"]
    assert logger._flusher.ring.credit[0] > 0


def test_a_fork_the_hooks_missed_renumbers_the_record(
    make_logger: MakeLogger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the pid changed and no hook ran, the slow path resets the logger (the
    parent's queue is not this process's) and logs the record under a fresh id prefix."""
    logger = quiet(make_logger)
    logger.log_prompt("parent", "o")
    parent_prefix = queued(logger)[0].id.rsplit("-", 1)[0]
    real = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real + 1)
    # Keep the child's flusher stopped.
    monkeypatch.setattr(Pipeline, "start", lambda self: None)
    # What the wiped pages read in a forked child.
    logger._flusher.ring.credit[0] = logger._here[0] = 0
    assert logger.log_prompt("child", "o")
    [record] = queued(logger)
    assert record.input == "child"
    assert record.id.rsplit("-", 1)[0] != parent_prefix


def test_get_stats_in_a_child_the_hooks_missed_is_the_childs(
    make_logger: MakeLogger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hook-less child's first get_stats() resets the logger: not the parent's queue."""
    logger = quiet(make_logger)
    logger.log_prompt("parent", "o")
    real = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real + 1)
    logger._here[0] = 0  # what the wiped page reads in a forked child
    stats = logger.get_stats()
    assert (stats["logs_queued"], stats["queue_size"]) == (0, 0)


@pytest.mark.skipif(not _fork.WIPES, reason="this kernel does not wipe pages on fork")
def test_get_prompt_asks_getpid_only_when_its_page_was_wiped(
    make_logger: MakeLogger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fork check of get_prompt/flush reads a cell the kernel zeroes in forked children:
    while it reads 1, no getpid(); once it reads 0 (a child whose hooks did not run) and the
    pid differs, the logger resets itself."""
    logger = quiet(make_logger)
    logger.log_prompt("parent", "o")
    calls: list[int] = []
    real = os.getpid()

    def getpid() -> int:
        calls.append(1)
        return real + 1

    monkeypatch.setattr(os, "getpid", getpid)
    logger._check_pid()
    assert (calls, len(queued(logger))) == ([], 1)
    logger._here[0] = 0  # what the wiped page reads in a forked child
    logger._check_pid()
    assert calls
    assert len(queued(logger)) == 0  # the parent's queue is not this process's
    assert logger._here[0] == 1


def test_non_text_input_and_output_are_coerced(make_logger: MakeLogger) -> None:
    """dict/list become JSON, None becomes "", other objects str()."""
    logger = quiet(make_logger)
    logger.log_prompt({"q": 1}, None)
    logger.log_prompt(42, ["a"])
    first, second = queued(logger)
    assert (first.input, first.output) == ('{"q":1}', "")
    assert (second.input, second.output) == ("42", '["a"]')


class Opaque:
    def __str__(self) -> str:
        return "opaque!"


def test_unencodable_metadata_values_go_through_the_hook(make_logger: MakeLogger) -> None:
    """Objects, sets, bytes, decimals and UUIDs in metadata are logged as plain values."""
    logger = quiet(make_logger)
    uid = uuid.UUID(int=1)
    metadata = {
        "obj": Opaque(), "set": {1}, "raw": b"ab", "dec": decimal.Decimal("1.5"), "uid": uid,
        "when": datetime.date(2025, 1, 2),
    }  # fmt: skip
    assert logger.log_prompt("i", "o", metadata=metadata)
    (record,) = queued(logger)
    assert record.metadata is not None
    assert record.metadata["obj"] == "opaque!"
    assert record.metadata["set"] == [1]
    assert record.metadata["raw"] == b"ab"
    assert record.metadata["uid"] == str(uid)


class Array:
    """An array-like (numpy, pandas, torch) of ``size`` items, counting its tolist() calls."""

    def __init__(self, size: int) -> None:
        self.size, self.shape, self.listed = size, (size,), 0

    def tolist(self) -> list[int]:
        self.listed += 1
        return [0] * self.size


def test_a_large_array_in_metadata_is_a_placeholder_and_a_small_one_a_list(
    make_logger: MakeLogger,
) -> None:
    """Review item 5: an array over MAX_LISTED_ITEMS is logged as a placeholder naming its
    shape, without tolist() (seconds and 36 MB for a 2000x2000 one); a small one as a list."""
    logger = quiet(make_logger)
    big, small = Array(MAX_LISTED_ITEMS + 1), Array(3)
    assert logger.log_prompt("i", "o", metadata={"big": big, "small": small})
    (record,) = queued(logger)
    assert record.metadata is not None
    assert (big.listed, record.metadata["small"]) == (0, [0, 0, 0])
    assert record.metadata["big"].startswith(f"<Array shape=({MAX_LISTED_ITEMS + 1},)")


def test_a_numpy_array_in_metadata_follows_the_same_rule(make_logger: MakeLogger) -> None:
    """Review item 5, with numpy itself: a small array as a list, a big one as a placeholder."""
    np = pytest.importorskip("numpy")
    logger = quiet(make_logger)
    assert logger.log_prompt("i", "o", metadata={"e": np.arange(3), "big": np.zeros((99, 99))})
    (record,) = queued(logger)
    assert record.metadata is not None
    assert record.metadata["e"] == [0, 1, 2]
    assert record.metadata["big"].startswith("<ndarray shape=(99, 99)")


def test_a_record_over_the_servers_limit_is_dropped_at_enqueue(make_logger: MakeLogger) -> None:
    """Review item 5: a record the server would refuse takes no place in the ring or the
    spool: log_prompt returns False and counts it as too_large."""
    logger = quiet(make_logger)
    assert not logger.log_prompt("x" * MAX_RECORD_BYTES, "o")
    stats = logger.get_stats()
    assert (stats["dropped"]["too_large"], stats["queue_size"], queued(logger)) == (1, 0, [])


class Lazy:
    """An attribute proxy (RPC, lazy object): any attribute is a callable giving another."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: Lazy()

    def __str__(self) -> str:
        return "lazy"


def test_a_mock_or_attribute_proxy_in_metadata_is_logged_as_text(make_logger: MakeLogger) -> None:
    """Review item 6: tolist/item are looked up on the type, so a proxy or a Mock (which
    answer any name with another of themselves) is stringified, not recursed into for ~30 s."""
    logger = quiet(make_logger)
    assert logger.log_prompt("i", "o", metadata={"lazy": Lazy()})
    assert logger.log_prompt("i", "o", metadata={"mock": mock.Mock()})
    lazy, mocked = (record.metadata or {} for record in queued(logger))
    assert lazy == {"lazy": "lazy"}
    assert mocked["mock"].startswith("<Mock")
    assert logger.get_stats()["logs_dropped"] == 0


def test_cyclic_metadata_falls_back_to_plain(make_logger: MakeLogger) -> None:
    """A metadata cycle is cut by the plain() fallback instead of losing the record."""
    logger = quiet(make_logger)
    cyclic: dict[str, Any] = {"a": 1}
    cyclic["self"] = cyclic
    assert logger.log_prompt("i", "o", metadata=cyclic)
    (record,) = queued(logger)
    assert record.metadata is not None
    assert record.metadata["a"] == 1
    assert logger.get_stats()["logs_dropped"] == 0


def test_non_str_identifiers_are_coerced(make_logger: MakeLogger) -> None:
    """An int version or prompt_id is sent as text (the server requires strings)."""
    logger = quiet(make_logger)
    assert logger.log_prompt("i", "o", version=3, prompt_id=9)  # type: ignore[arg-type]
    (record,) = queued(logger)
    assert (record.version, record.prompt_id) == ("3", "9")


def test_lone_surrogates_are_logged_as_replacement_characters(make_logger: MakeLogger) -> None:
    """Text with a lone surrogate (surrogateescape input) is logged as U+FFFD, not dropped."""
    logger = quiet(make_logger)
    assert logger.log_prompt("a\ud800", "o", model="m\udcff", metadata={"\ud800": ["\udfff"]})
    (record,) = queued(logger)
    assert (record.input, record.model, record.metadata) == (
        "a\ufffd", "m\ufffd", {"\ufffd": ["\ufffd"]},
    )  # fmt: skip
    assert logger.get_stats()["logs_dropped"] == 0


def test_a_record_even_the_slow_path_cannot_encode_is_an_encode_error(
    make_logger: MakeLogger,
) -> None:
    """A metadata value that cannot even be shown fails both encodings: counted as
    encode_error, False."""

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no text either")

    logger = quiet(make_logger)
    assert not logger.log_prompt("i", "o", metadata={"k": Broken()})
    assert logger.get_stats()["dropped"]["encode_error"] == 1
    assert queued(logger) == []


@pytest.mark.parametrize(
    ("given", "logged"),
    [(412, 412), (12.5, 12.5), (float("nan"), None), (float("inf"), None), ("412", 412.0),
     ("fast", None), (True, None), (decimal.Decimal("2.5"), 2.5), (decimal.Decimal("NaN"), None),
     (datetime.timedelta(seconds=2), 2000.0), (10**400, None), (2**64, 2.0**64)],
)  # fmt: skip
def test_durations_are_sent_as_finite_numbers_or_not_at_all(
    make_logger: MakeLogger, given: Any, logged: float | None
) -> None:
    """The server takes finite numbers only: anything else is made one, or left out, and the
    record is kept."""
    logger = quiet(make_logger)
    assert logger.log_prompt("i", "o", duration_ms=given)
    (record,) = queued(logger)
    assert record.duration_ms == logged
    assert record.duration_ms.__class__ in {float, int, type(None)}
    assert logger.get_stats()["logs_dropped"] == 0


def test_explicit_falsy_identifiers_still_win_and_are_text(make_logger: MakeLogger) -> None:
    """version=0 is a version: given explicitly it is logged, as "0"."""
    logger = quiet(make_logger)
    prompt = banyan.PromptData(content="c", version="3", prompt_id="p1")
    assert logger.log_prompt("i", "o", version=0)  # type: ignore[arg-type]
    assert logger.log_prompt("i", "o", prompt_data=prompt, version=0)  # type: ignore[arg-type]
    assert [r.version for r in queued(logger)] == ["0", "0"]


def test_mapping_metadata_is_logged_as_a_map(make_logger: MakeLogger) -> None:
    """Read-only and user mappings are maps on the wire, not their repr."""
    logger = quiet(make_logger)
    inner = types.MappingProxyType({"depth": 2})
    assert logger.log_prompt("i", "o", metadata=collections.UserDict(a=1, nested=inner))  # type: ignore[arg-type]
    assert logger.log_prompt("i", "o", metadata=types.MappingProxyType({"b": 2}))  # type: ignore[arg-type]
    assert [r.metadata for r in queued(logger)] == [{"a": 1, "nested": {"depth": 2}}, {"b": 2}]


def test_metadata_gets_text_keys_and_a_map_shape(
    make_logger: MakeLogger, caplog: pytest.LogCaptureFixture
) -> None:
    """A list or a string becomes {"value": ...} (warned once), an int beyond 64 bits its
    digits, keys of a map that needed converting text; the record is kept."""
    logger = quiet(make_logger)
    with caplog.at_level(logging.WARNING, logger="banyan"):
        assert logger.log_prompt("i", "o", metadata={1: "a", None: [2**64]})  # type: ignore[dict-item]
        assert logger.log_prompt("i", "o", metadata=["a", 1])  # type: ignore[arg-type]
        assert logger.log_prompt("i", "o", metadata="text")  # type: ignore[arg-type]
    assert [r.metadata for r in queued(logger)] == [
        {"1": "a", "None": [str(2**64)]}, {"value": ["a", 1]}, {"value": "text"},
    ]  # fmt: skip
    assert logger.get_stats()["logs_dropped"] == 0
    assert len([r for r in caplog.records if "metadata" in r.getMessage()]) == 1


def test_prompt_data_given_as_fields_is_read_as_a_prompt(
    make_logger: MakeLogger, caplog: pytest.LogCaptureFixture
) -> None:
    """A dict of PromptData's fields, or an object with them (1.0.1's PromptData), works;
    anything else is no prompt: the record is logged without prompt fields, warned once."""
    logger = quiet(make_logger)
    fields = {"prompt_id": "p1", "name": "greet", "content": "c", "version": 2,
              "experiment_id": "exp_1"}  # fmt: skip
    assert logger.log_prompt("i", "o", prompt_data=fields)  # type: ignore[arg-type]
    assert logger.log_prompt("i", "o", prompt_data=types.SimpleNamespace(**fields))  # type: ignore[arg-type]
    records = queued(logger)
    assert [(r.prompt_id, r.prompt_name, r.version, r.experiment_id) for r in records] == [
        ("p1", "greet", "2", "exp_1")
    ] * 2
    with caplog.at_level(logging.WARNING, logger="banyan"):
        assert logger.log_prompt("i", "o", prompt_data=42)  # type: ignore[arg-type]
        assert logger.log_prompt("i", "o", prompt_data="support-reply")  # type: ignore[arg-type]
    assert [(r.prompt_id, r.prompt_name) for r in queued(logger)[2:]] == [(None, None)] * 2
    assert logger.get_stats()["logs_dropped"] == 0
    assert len([r for r in caplog.records if "prompt_data" in r.getMessage()]) == 1


def test_enable_logging_false_skips_and_reports_success(make_logger: MakeLogger) -> None:
    """A prompt with enable_logging off is not logged, and log_prompt returns True."""
    logger = quiet(make_logger)
    prompt = banyan.PromptData(content="c", enable_logging=False)
    assert logger.log_prompt("i", "o", prompt_data=prompt) is True
    assert queued(logger) == []
    assert logger.get_stats()["logs_skipped"] == 1


@pytest.mark.parametrize("gil", [True, False])
def test_a_skipped_record_is_counted_under_the_stats_lock_without_a_gil(
    make_logger: MakeLogger, monkeypatch: pytest.MonkeyPatch, gil: bool
) -> None:
    """Without a GIL the skipped count goes through the stats lock; with one, a bare add."""
    import banyan._stats

    logger = quiet(make_logger)
    monkeypatch.setattr(banyan._stats, "GIL", gil)
    locked: list[int] = []
    lock = logger._stats._lock

    class Counting:
        def __enter__(self) -> None:
            locked.append(1)
            lock.__enter__()

        def __exit__(self, *exc: Any) -> None:
            lock.__exit__(*exc)

    monkeypatch.setattr(logger._stats, "_lock", Counting())
    prompt = banyan.PromptData(content="c", enable_logging=False)
    for _ in range(3):
        assert logger.log_prompt("i", "o", prompt_data=prompt) is True
    assert len(locked) == (0 if gil else 3)
    assert logger.get_stats()["logs_skipped"] == 3


def test_internal_errors_are_counted_never_raised(
    make_logger: MakeLogger, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure inside log_prompt is a counted drop plus one warning, not an exception."""
    logger = quiet(make_logger)

    def boom(item: Encoded) -> bool:
        raise RuntimeError("boom")

    logger._push = boom
    with caplog.at_level(logging.WARNING, logger="banyan"):
        assert logger.log_prompt("i", "o") is False
        assert logger.log_prompt("i", "o") is False
    stats = logger.get_stats()
    assert stats["dropped"]["internal_error"] == 2
    assert stats["logs_queued"] == 2
    assert len([r for r in caplog.records if "dropped" in r.getMessage()]) == 1


def test_log_after_shutdown_is_a_counted_drop(make_logger: MakeLogger) -> None:
    """log_prompt after shutdown() returns False and counts a 'closed' drop."""
    logger, _ = make_logger()
    logger.shutdown(timeout=1)
    assert logger.log_prompt("i", "o") is False
    stats = logger.get_stats()
    assert stats["dropped"]["closed"] == 1
    assert stats["dropped"]["queue_full"] == 0
    assert stats["logs_queued"] == 1


def test_a_blocking_call_gives_back_a_huge_scratch_buffer(make_logger: MakeLogger) -> None:
    """blocking=True returns early, but not before dropping a grown encoding buffer."""
    logger, _ = make_logger()
    assert logger.log_prompt("x" * (SCRATCH_MAX * 2), "o", blocking=True)
    assert len(scratch.slot[0] or b"") <= SCRATCH_MAX


def test_threads_sharing_the_buffer_keep_every_record_whole(make_logger: MakeLogger) -> None:
    """Four threads whose records run Python code while they encode (a Decimal in metadata:
    the enc_hook), switching every 10 us: each record decodes to its own text, and the
    shared buffer is given back (not left taken)."""
    logger, _ = make_logger(max_queue_bytes=1 << 30, batch_size=10**6, spool_dir=False)
    logger._idle = False  # no flusher: the ring only fills
    threads_n, per_thread = 4, 500

    def produce(t: int) -> None:
        for i in range(per_thread):
            logger.log_prompt(f"t{t} {i}", "o" * i, metadata={"d": decimal.Decimal(i)})

    contended(produce, threads_n)
    records = [msgspec.msgpack.decode(item) for item in logger._flusher.ring._items]
    assert len(records) == threads_n * per_thread
    for record in records:
        i = int(record["input"].split()[1])
        assert (record["output"], record["metadata"]) == ("o" * i, {"d": str(i)})
    assert isinstance(scratch.slot[0], bytearray)


def test_a_call_that_finds_the_buffer_taken_encodes_apart(make_logger: MakeLogger) -> None:
    """While another call holds the buffer (slot None) a record is still logged whole, and
    the holder's give-back during that call (here: while its metadata is converted) is kept,
    not overwritten with None."""
    logger, _ = make_logger(spool_dir=False)
    logger._idle = False
    held, scratch.slot[0] = scratch.slot[0], None

    class GivesBack:
        def tolist(self) -> list[int]:
            scratch.slot[0] = held
            return [1]

    try:
        assert logger.log_prompt("taken", "o", metadata={"v": GivesBack()})
        assert scratch.slot[0] is held
    finally:
        scratch.slot[0] = held
    (item,) = logger._flusher.ring._items
    assert msgspec.msgpack.decode(item)["metadata"] == {"v": [1]}


def test_a_child_forked_after_shutdown_stays_shut(make_logger: MakeLogger) -> None:
    """A logger shut down before fork() refuses records in the child too (counted, closed);
    before, the child's fresh ring took them and nothing would ever send them."""
    logger, _ = make_logger()
    logger.shutdown(timeout=1)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        refused = not logger.log_prompt("i", "o")
        closed = logger.get_stats()["dropped"]["closed"] == 1
        os._exit(0 if refused and closed else 1)
    assert os.waitpid(pid, 0)[1] == 0


SIGNAL_LOGGING = """
import json, signal, sys, tempfile, msgspec, banyan
from banyan._record import Record
durable = sys.argv[1] == "durable"
logger = banyan.PromptStackLogger(api_key="psk_unit", base_url="http://127.0.0.1:9",
                                  durability=sys.argv[1], max_queue_bytes=1 << 30,
                                  spool_dir=tempfile.mkdtemp() if durable else False,
                                  spool_max_bytes=1 << 30)
logger._idle = False  # no flusher: every record stays in the ring (or the spool)
handled = []
def handler(signum, frame):
    handled.append(logger.log_prompt(f"sig-{len(handled)}", "o"))
signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
main = [logger.log_prompt(f"main-{i}", "o") for i in range(30_000)]
signal.setitimer(signal.ITIMER_REAL, 0)
blobs = list(logger._flusher.ring._items)
if durable:
    spool = logger._spooling.spool
    spool.seal()
    while (segment := spool.claim()) is not None:
        blobs += segment.records()
records = [msgspec.msgpack.decode(r, type=Record) for r in blobs]
print(json.dumps({
    "main_ok": sum(main), "handled": len(handled), "handled_ok": sum(handled),
    "main_logged": len({r.input for r in records if r.input.startswith("main-")}),
    "sig_logged": sum(r.input.startswith("sig-") for r in records),
    "ids": len({r.id for r in records}), "records": len(records),
}))
"""


@pytest.mark.parametrize("durability", ["buffered", "durable"])
def test_log_prompt_from_a_signal_handler_neither_corrupts_nor_hangs(durability: str) -> None:
    """A handler that logs while the main thread is inside log_prompt (its encoding buffer,
    the ring's lock, the spool's lock) gets its own record in, and the interrupted record
    stays intact. (Durable: the spool refuses the handler's record, the ring keeps it.)"""
    done = subprocess.run(
        [sys.executable, "-c", SIGNAL_LOGGING, durability],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["handled"] > 100  # the timer did interrupt
    assert out["main_ok"] == out["main_logged"] == 30_000
    assert out["handled_ok"] == out["sig_logged"] == out["handled"]
    assert out["ids"] == out["records"] == 30_000 + out["handled"]


def test_a_sending_thread_that_cannot_start_leaves_the_record_queued(
    make_logger: MakeLogger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the process's thread limit the record is queued (counted once, not also dropped)
    and the thread is tried again on a later push."""
    logger, _ = make_logger()
    real = logger._flusher._spawn

    def no_threads() -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(logger._flusher, "_spawn", no_threads)
    assert logger.log_prompt("first", "o")
    stats = logger.get_stats()
    assert (stats["logs_queued"], stats["queue_size"], stats["logs_dropped"]) == (1, 1, 0)
    monkeypatch.setattr(logger._flusher, "_spawn", real)
    # The next record takes the slow path, as it would at a wake.
    logger._flusher.ring.credit[0] = 0
    assert logger.log_prompt("second", "o")
    assert logger.flush(timeout=5)
    assert logger.get_stats()["logs_sent"] == 2
