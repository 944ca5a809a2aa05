"""``PromptStackLogger``: prompts in, usage logs out, through one flusher core.

``log_prompt`` is the hot path. On the caller's thread it builds a
:class:`~banyan._record.Record`, encodes it once (which also snapshots the
caller's data) and pushes the bytes into the ring (``durability="buffered"``)
or appends them to the spool's mmap segment (``"durable"``); it never blocks
(in background mode) and never raises: every loss is counted under a
:class:`~banyan._stats.DropReason` and warned about once. With a spool, what
the ring cannot hold, what the server cannot take after retries and what is
left at shutdown goes to disk and is replayed (``_spooling``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from banyan import _fork
from banyan._config import DEFAULT_BASE_URL, Config, build
from banyan._controls import Gate
from banyan._pipeline import Pipeline, remaining
from banyan._promptcalls import PromptCalls
from banyan._promptdata import PromptData
from banyan._prompts import Prompts
from banyan._record import (
    SCRATCH_MAX,
    Encoded,
    IdSource,
    Record,
    encode_into,
    text,
)
from banyan._record import scratch as _scratch
from banyan._scores import ScoreCalls, outcome_record
from banyan._slowpath import SlowPaths, merge
from banyan._spooling import open_spool
from banyan._transport import Transport
from banyan._warn import debug_handler

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

    from banyan._types import Options, Statistics

_getpid = os.getpid
_time = time.time
#: The default of the 1.0.1 constructor's options: "not given" (Config holds the defaults).
_UNSET: Any = object()


def _seconds(timeout: float | None) -> float:
    """A wait as threading takes it: at least 0, at most TIMEOUT_MAX (None and inf too)."""
    if timeout is None:
        return threading.TIMEOUT_MAX
    return min(max(0.0, float(timeout)), threading.TIMEOUT_MAX)


class PromptStackLogger(PromptCalls, ScoreCalls, SlowPaths):
    """A Banyan client: fetches prompts and logs their production usage.

    The first block of arguments is the 1.0.1 constructor; the keyword-only
    block is new (see :class:`banyan._config.Config` for every default).
    An option not given comes from its ``BANYAN_<OPTION>`` variable when
    set (``BANYAN_API_KEY``, ``BANYAN_MAX_RETRIES``, ``BANYAN_DISABLED=1``...).
    Raises :class:`~banyan.ConfigurationError` for bad settings.
    """

    def __init__(  # noqa: PLR0917 - the 1.0.1 constructor took these positionally
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        project_id: str | None = None,
        max_retries: int = _UNSET,
        retry_delay: float = _UNSET,
        queue_size: int = _UNSET,
        flush_interval: float = _UNSET,
        background_thread: bool = _UNSET,
        cache_ttl: float = _UNSET,
        enable_metrics: bool = _UNSET,
        auto_flush: bool = _UNSET,
        batch_size: int = _UNSET,
        **options: Unpack[Options],
    ) -> None:
        # Not given: BANYAN_<OPTION> or the default applies.
        given = dict(
            max_retries=max_retries, retry_delay=retry_delay, queue_size=queue_size,
            flush_interval=flush_interval, background_thread=background_thread,
            cache_ttl=cache_ttl, enable_metrics=enable_metrics, auto_flush=auto_flush,
            batch_size=batch_size,
        )  # fmt: skip
        given = {name: value for name, value in given.items() if value is not _UNSET}
        self._config: Config = build(api_key, base_url, project_id, **given, **options)
        self._ids = IdSource()
        if self._config.debug:
            debug_handler()
        self._spool = open_spool(self._config) if self._config.enabled else None
        if not self._config.enabled:
            # The off switch: nothing is built that would start a thread or touch a file.
            self.log_prompt = self.log = self._log_disabled  # type: ignore[method-assign]
        try:
            self._setup()
        except BaseException:
            if self._spool is not None:
                self._spool.close()  # another logger of this process may take it
            raise
        _fork.track(self)

    def _setup(self, fresh: bool = True) -> None:
        """Build the per-process parts: transport, pipeline, prompt cache.

        ``fresh`` is False in a forked child, whose flusher starts on first use.
        """
        config = self._config
        self._pid = _fork.pid()
        # _here[0] is 1 in this process and reads 0 in any forked child (a page the kernel
        # wipes; where nothing wipes pages it stays 0 and _check_pid asks getpid() instead).
        self._here = _fork.wiped_cell()
        self._here[0] = int(_fork.WIPES)
        self._transport = Transport(config)
        pipeline = self._pipeline = Pipeline(config, self._transport, self._spool, fresh=fresh)
        self._stats = pipeline.ledger
        # The pipeline's parts, by the names the tests and benchmarks reach them under.
        self._flusher, self._spooling, self._delivery = (
            pipeline.flusher, pipeline.spooling, pipeline.delivery
        )  # fmt: skip
        # log_prompt's fast path (banyan._ring); everything else goes through _push.
        self._try_append = pipeline.ring.try_append
        self._push: Callable[[Encoded], bool] = pipeline.push
        self._next_id = self._ids.next
        controlled = config.sample_rate < 1.0 or config.before_send is not None
        self._gate = (
            Gate(config.sample_rate, config.before_send, self._stats) if controlled else None
        )
        self._prompts = Prompts(self._transport, self._stats, config)

    @property
    def _idle(self) -> bool:
        return self._pipeline.idle

    @_idle.setter
    def _idle(self, idle: bool) -> None:
        # Tests and benchmarks keep the flusher from starting.
        self._pipeline.idle = idle

    @property
    def _closed(self) -> bool:
        return self._pipeline.closed

    @property
    def config(self) -> Config:
        """The validated settings of this logger."""
        return self._config

    def log_prompt(  # noqa: PLR0917 - the 1.0.1 signature, then #18's outcomes
        self,
        input: Any,
        output: Any,
        prompt_data: PromptData | None = None,
        prompt_id: str | None = None,
        prompt_name: str | None = None,
        version: str | None = None,
        branch_name: str | None = None,
        model: str | None = None,
        metadata: dict[str, Any] | None = None,
        duration_ms: float | None = None,
        blocking: bool = False,
        usage: Any = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cached_input_tokens: int | None = None,
        cost: float | None = None,
        record_id: str | None = None,
    ) -> bool:
        """Log one prompt usage; True when queued (or, with ``blocking``, delivered).

        Never raises and, unless ``blocking``, never waits for the network.
        A prompt with ``enable_logging`` off is skipped and reports True, and
        so is a record that ``sample_rate`` or ``before_send`` stops (counted).

        Outcomes, passed by keyword (#18): ``usage`` takes the usage object of
        an OpenAI or Anthropic response (or a dict of either shape);
        ``input_tokens``, ``output_tokens``, ``cached_input_tokens`` and
        ``cost`` (US dollars) are given or override its counts. ``record_id``
        (text, at most 128 characters) becomes the record's id, which
        :meth:`log_score` can name. A bad one of these is warned about once
        and left out; the record is logged all the same.
        """
        try:
            # Each check costs the usual value one class test. The server takes finite numbers
            # only: NaN or infinite (x - x is NaN, truthy) is left out, anything but a float or
            # an int (a bool, a Decimal, a timedelta) made one or left out (warned once).
            if duration_ms.__class__ is not float:
                if duration_ms is not None and duration_ms.__class__ is not int:
                    duration_ms = self._duration(duration_ms)
            elif duration_ms - duration_ms:
                duration_ms = self._duration(duration_ms)
            # The wire's metadata is a map, its model text: _log_odd() makes them so. (Its keys
            # are not checked here: a loop over them costs ~10 % of this call.)
            if (
                metadata.__class__ is not dict
                and metadata is not None
                and not isinstance(metadata, dict)
            ):
                raise TypeError("metadata is not a dict")
            if model.__class__ is not str and model is not None:
                raise TypeError("model is not text")
            if prompt_data is None:
                experiment_id = experiment_version_id = sticky_key = sticky_value = None
                if (
                    prompt_id is not None or prompt_name is not None
                    or version is not None or branch_name is not None
                ):  # fmt: skip
                    prompt_id, prompt_name, version, branch_name = merge(
                        (None, None, None, None), prompt_id, prompt_name, version, branch_name
                    )
            else:
                wire = prompt_data._wire
                if wire is None:
                    return self._stats.skip()
                if (
                    prompt_id is not None or prompt_name is not None
                    or version is not None or branch_name is not None
                ):  # fmt: skip
                    wire = merge(wire, prompt_id, prompt_name, version, branch_name)
                (prompt_id, prompt_name, version, branch_name, experiment_id,
                 experiment_version_id, sticky_key, sticky_value) = wire  # fmt: skip
            if input.__class__ is not str:
                input = text(input)
            if output.__class__ is not str:
                output = text(output)
            # The outcomes are positional-or-keyword: CPython copies their defaults from a
            # tuple, where keyword-only ones cost a dict lookup each and **outcomes a new dict.
            if (
                record_id is None and usage is None and cost is None and input_tokens is None
                and output_tokens is None and cached_input_tokens is None
            ):  # fmt: skip
                record = Record(
                    self._next_id(), _time(), input, output, prompt_id, prompt_name, version,
                    branch_name, model, metadata, duration_ms, experiment_id,
                    experiment_version_id, sticky_key, sticky_value,
                )  # fmt: skip
            else:
                outcomes = (usage, input_tokens, output_tokens, cached_input_tokens, cost)
                record = outcome_record(
                    self._stats, outcomes, record_id, self._next_id(), _time(), input, output,
                    prompt_id, prompt_name, version, branch_name, model, metadata, duration_ms,
                    experiment_id, experiment_version_id, sticky_key, sticky_value,
                )  # fmt: skip
            # Sampling and before_send (banyan._controls); None unless configured.
            if (
                self._gate is not None
                and (stopped := self._gate(record, record_id is not None)) is not None
            ):
                return stopped
            data: Encoded | None
            slot = _scratch.slot
            buffer = slot[0]
            slot[0] = None
            try:
                # None: another call holds the buffer (see Scratch); TypeError, encoded apart.
                encode_into(record, buffer)  # type: ignore[arg-type]
                data = buffer[:]  # type: ignore[index]
                slot[0] = buffer
            except Exception:
                if buffer is not None:
                    slot[0] = buffer
                data = self._encode_slow(record)
                if data is None:
                    return False
            size = len(data)
            if size > SCRATCH_MAX and not self._large(slot, size):
                return False
            if blocking:
                return self._send_now(record, data)
            if self._try_append(data, size):
                return True
            return self._push_slow(record, data)
        except Exception as exc:
            return self._log_odd(
                exc, input, output, prompt_data, prompt_id, prompt_name, version,
                branch_name, model, metadata, duration_ms, blocking,
                (usage, input_tokens, output_tokens, cached_input_tokens, cost, record_id),
            )  # fmt: skip

    log = log_prompt

    def _start(self) -> None:
        self._pipeline.start()

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Send everything logged so far; True when it was all delivered or spooled by ``timeout``.

        Records the server cannot take after retries go to the spool, and
        count as settled. Then the spool is sealed and its replay, a backlog
        adopted from earlier processes included, woken: in buffered mode
        flush() does not wait for it (spooled records are settled; the replay
        keeps its backoff); in durable mode, where the spool is the queue, it
        waits until the spool is empty or an attempt failed (the records stay
        spooled), and is True only then. Returns by the deadline
        whatever the server does; False as well when any record was lost
        since the previous flush, or while the server refuses the API key
        (the records wait in the spool for a process whose key it accepts).
        ``None`` waits as long as it takes.
        """
        self._check_pid()
        return self._pipeline.flush(time.monotonic() + _seconds(timeout))

    async def aflush(self, timeout: float | None = 30.0) -> bool:
        """:meth:`flush` for asyncio: waits in a thread, never blocking the event loop."""
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(None, self.flush, timeout)

    def shutdown(self, timeout: float | None = 30.0) -> bool:
        """Flush, stop the flusher and close the connection; idempotent.

        Whatever is still queued or in flight when ``timeout`` runs out goes
        to the spool (without one it is dropped and counted as ``shutdown``),
        which is then closed so that another process can replay it (a
        half-replayed segment whole); ``get_stats()["spool_handed_over"]``
        and a warning say how many records it left. Returns whether
        everything was delivered, or spooled.
        """
        self._check_pid()  # a child forked without the hooks must not send its parent's queue
        if self._pipeline.closed:
            return self._pipeline.wait_closed(_seconds(timeout))
        deadline = time.monotonic() + _seconds(timeout)
        settled = self._pipeline.close(deadline)
        self._prompts.close(remaining(deadline))
        self._transport.close()
        return settled

    def get_stats(self) -> Statistics:
        """Counters: ``logs_sent``, ``queue_size``, drops by reason and more."""
        self._check_pid()  # a child forked without the hooks reports its own, empty, ring
        stats = self._pipeline.stats()
        stats["prompt_cache"] = self._prompts.stats()
        return cast("Statistics", stats)

    def _check_pid(self) -> None:
        if not self._here[0] and self._pid != _fork.pid():
            self._after_fork_in_child()

    def _after_fork_in_child(self) -> None:
        """Forget the parent's queue, ids, connections and threads; keep its cached prompts."""
        parent_prompts, closed = self._prompts, self._pipeline.closed
        self._transport.forget()
        self._ids.reset()
        if self._spool is not None:
            self._spool.after_fork_in_child()
        self._setup(fresh=False)
        self._prompts.inherit(parent_prompts)
        if closed:
            # Shut down before the fork: the child's logger stays shut (counted drops), and
            # its flush() waits for no shutdown (one in progress stays the parent's).
            self._pipeline.close_in_child()

    def _at_exit(self) -> None:
        if not self._pipeline.closed and self._pid == _getpid():
            self._pipeline.close(time.monotonic() + self._config.atexit_timeout)

    def __enter__(self) -> Self:
        """``with PromptStackLogger(...) as logger:`` shuts it down on exit."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """:meth:`shutdown` with its default timeout."""
        self.shutdown()

    async def __aenter__(self) -> Self:
        """``async with PromptStackLogger(...) as logger:`` shuts it down on exit."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """:meth:`ashutdown` with its default timeout."""
        await self.ashutdown()

    async def ashutdown(self, timeout: float | None = 30.0) -> bool:
        """:meth:`shutdown` for asyncio: waits in a thread, never blocking the event loop."""
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(None, self.shutdown, timeout)

    def __repr__(self) -> str:
        url = self._config.base_url
        where = "" if url == DEFAULT_BASE_URL else f" {url}"
        return f"<PromptStackLogger{where} project={self._config.project_id!r}>"
