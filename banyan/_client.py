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

import operator
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast, overload

from banyan import _fork
from banyan._config import DEFAULT_BASE_URL, Config, build
from banyan._controls import Gate
from banyan._delivery import MAX_RECORD_BYTES
from banyan._pipeline import Pipeline, remaining
from banyan._prompts import MISS, PromptData, Prompts, as_prompt, fallback_prompt
from banyan._record import (
    SCRATCH_MAX,
    Encoded,
    IdSource,
    Record,
    Score,
    as_duration,
    as_label,
    as_metadata,
    encode,
    encode_into,
    normalize,
    text,
)
from banyan._record import scratch as _scratch
from banyan._scores import attribution, encoded, outcome_record, sampled, score
from banyan._spooling import open_spool
from banyan._stats import DropReason
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


def _merge(wire: tuple[str | None, ...], *given: str | None) -> tuple[str | None, ...]:
    # Arguments passed explicitly win over the prompt's own fields; ids are text on the wire.
    head = tuple(
        theirs if mine is None else mine if isinstance(mine, str) else str(mine)
        for mine, theirs in zip(given, wire, strict=False)
    )
    return head + wire[len(given) :]


class PromptStackLogger:
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

    @overload
    def get_prompt(
        self,
        name: str,
        version: str | None = ...,
        branch: str = ...,
        sticky_context: Mapping[str, Any] | None = ...,
        *,
        fallback: str | PromptData,
    ) -> PromptData: ...
    @overload
    def get_prompt(
        self,
        name: str,
        version: str | None = ...,
        branch: str = ...,
        sticky_context: Mapping[str, Any] | None = ...,
        fallback: str | PromptData | None = ...,
    ) -> PromptData | None: ...
    def get_prompt(
        self,
        name: str,
        version: str | None = None,
        branch: str = "main",
        sticky_context: Mapping[str, Any] | None = None,
        fallback: str | PromptData | None = None,
    ) -> PromptData | None:
        """Fetch a prompt through the cache; None when the server has no such prompt.

        A cached prompt is fresh for ``cache_ttl`` s, then served stale while
        one background refresh per prompt fetches it again. With
        ``sticky_context`` holding the running experiment's sticky key the
        caller is routed locally to a variant (docs/protocol.md, "Routing").
        When the server cannot be reached and nothing is cached in memory, the
        on-disk cache (``cache_dir``) is tried, then ``fallback`` (a content
        string or a PromptData); without one a BanyanError is raised.
        """
        if not self._here[0]:
            self._check_pid()
        if not self._config.enabled:
            return None if fallback is None else fallback_prompt(fallback, name, version, branch)
        return self._prompts.get(name, version, branch, sticky_context, fallback)

    @overload
    async def aget_prompt(
        self,
        name: str,
        version: str | None = ...,
        branch: str = ...,
        sticky_context: Mapping[str, Any] | None = ...,
        *,
        fallback: str | PromptData,
    ) -> PromptData: ...
    @overload
    async def aget_prompt(
        self,
        name: str,
        version: str | None = ...,
        branch: str = ...,
        sticky_context: Mapping[str, Any] | None = ...,
        fallback: str | PromptData | None = ...,
    ) -> PromptData | None: ...
    async def aget_prompt(
        self,
        name: str,
        version: str | None = None,
        branch: str = "main",
        sticky_context: Mapping[str, Any] | None = None,
        fallback: str | PromptData | None = None,
    ) -> PromptData | None:
        """:meth:`get_prompt` for asyncio: a cache hit returns at once, a fetch runs in a thread."""
        self._check_pid()
        if not self._config.enabled:
            return self.get_prompt(name, version, branch, sticky_context, fallback)
        found = self._prompts.get(
            name, version, branch, sticky_context, fallback=fallback, block=False
        )
        if found is not MISS:
            return found
        import asyncio
        import functools

        fetch = functools.partial(
            self._prompts.get, name, version, branch, sticky_context, fallback=fallback
        )
        return await asyncio.get_running_loop().run_in_executor(None, fetch)

    def experiment(
        self, experiment_id: str, sticky_key: str, sticky_value: str
    ) -> PromptData | None:
        """Route a subject through the server (the 1.0.1 call); None when unknown.

        A missing (None or empty) value gets the experiment prompt's default version;
        with ``enabled=False`` the answer is None, without a request.
        """
        self._check_pid()
        if not self._config.enabled:
            return None
        return self._prompts.route(experiment_id, sticky_key, sticky_value)

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
            # an int (a bool, a Decimal, a timedelta) made one or left out.
            if duration_ms.__class__ is not float:
                if duration_ms is not None and duration_ms.__class__ is not int:
                    duration_ms = as_duration(duration_ms)
            elif duration_ms - duration_ms:
                duration_ms = None
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
                    prompt_id, prompt_name, version, branch_name = _merge(
                        (None, None, None, None), prompt_id, prompt_name, version, branch_name
                    )
            else:
                wire = prompt_data._wire
                if wire is None:
                    self._stats.skipped += 1
                    return True
                if (
                    prompt_id is not None or prompt_name is not None
                    or version is not None or branch_name is not None
                ):  # fmt: skip
                    wire = _merge(wire, prompt_id, prompt_name, version, branch_name)
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
            if self._gate is not None and (stopped := self._gate(record)) is not None:
                return stopped
            data: Encoded | None
            slot = _scratch.slot
            buffer = slot[0]
            slot[0] = None
            try:
                # None: this runs in a signal handler that interrupted a log_prompt of this
                # thread while it held the buffer (see _Scratch); TypeError, encoded apart.
                encode_into(record, buffer)  # type: ignore[arg-type]
                data = buffer[:]  # type: ignore[index]
            except Exception:
                data = self._encode_slow(record)
                if data is None:
                    slot[0] = buffer
                    return False
            slot[0] = buffer
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

    def log_score(
        self,
        name: str,
        value: bool | float | str,
        *,
        prompt_data: PromptData | None = None,
        record_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        score_id: str | None = None,
        blocking: bool = False,
    ) -> bool:
        """Log an outcome: a number, a boolean or a category; True when queued (or delivered).

        It counts for the experiment subject and variant of ``prompt_data`` (the
        prompt the scored answer used, or one routed again for the same subject,
        in any process), and/or for the record logged with ``record_id``. It
        travels like a record (same queue, batches, retries, spool and
        ``get_stats()`` counts) and follows the subject's ``sample_rate``
        decision; ``before_send`` does not see it. A prompt outside an
        experiment, without ``record_id``, is skipped (``logs_skipped``).
        Raises :class:`~banyan.ScoreError` for a bad name, value, id or metadata,
        or without ``prompt_data`` and ``record_id``; never for delivery.
        """
        wire = attribution(prompt_data, record_id)
        record = score(
            name, value, wire, ids=self._next_id, record_id=record_id, metadata=metadata,
            score_id=score_id,
        )  # fmt: skip
        if not self._config.enabled:
            return self._log_disabled()
        if record_id is None and (record.sticky_value is None or record.experiment_id is None):
            self._stats.skipped += 1
            self._stats.warn_once(
                "score-no-subject", "banyan: a score for a prompt outside an experiment (or "
                "with logging off) and without record_id is skipped",
            )  # fmt: skip
            return True
        rate = self._config.sample_rate
        if rate < 1.0 and not sampled(rate, record, self._stats):
            return True
        data = encoded(record, self._stats)
        if data is None or (len(data) > SCRATCH_MAX and not self._large([None], len(data))):
            return False
        if blocking:
            return self._send_now(record, data)
        return self._try_append(data, len(data)) or self._push_slow(record, data)

    def _log_disabled(self, *args: Any, **kwargs: Any) -> bool:
        """log_prompt when ``enabled=False``: counted as ``disabled``, nothing else."""
        self._stats.drop(DropReason.DISABLED, entry=True)
        return True

    def _log_odd(  # noqa: PLR0917 - log_prompt's arguments
        self,
        exc: Exception,
        input: Any,
        output: Any,
        prompt_data: Any,
        prompt_id: Any,
        prompt_name: Any,
        version: Any,
        branch_name: Any,
        model: Any,
        metadata: Any,
        duration_ms: Any,
        blocking: bool,
        outcomes: tuple[Any, ...],
    ) -> bool:
        """log_prompt's fast path failed (``exc``) on arguments of an unexpected type: make
        them plain and try once more. A value that cannot even be shown is the caller's
        ``encode_error``; when there was nothing to make plain, the failure is ours."""
        given = (input, output, prompt_data, prompt_id, prompt_name, version, branch_name,
                 model, metadata, duration_ms)  # fmt: skip
        try:
            plain_args: list[Any] = [
                text(input), text(output), self._as_prompt(prompt_data),
                *map(as_label, given[3:8]), self._as_metadata(metadata), as_duration(duration_ms),
            ]  # fmt: skip
            plain_args.append(blocking)
        except Exception as bad:
            return self._stats.drop_entry(DropReason.ENCODE_ERROR, bad)
        # map() stops at the shorter: blocking, last in plain_args, is not compared.
        if all(map(operator.is_, plain_args, given)):
            return self._stats.drop_entry(DropReason.INTERNAL_ERROR, exc)
        return self.log_prompt(*plain_args, *outcomes)

    def _as_prompt(self, value: Any) -> PromptData | None:
        if value is None or isinstance(value, PromptData):
            return value
        try:
            return as_prompt(value)
        except Exception:
            self._stats.warn_once(
                "not-a-prompt", "banyan: prompt_data is not a prompt (a %s); such records are "
                "logged without prompt fields", type(value).__name__,
            )  # fmt: skip
            return None

    def _as_metadata(self, value: Any) -> dict[str, Any] | None:
        if value is not None and not isinstance(value, Mapping):
            self._stats.warn_once(
                "metadata-not-a-map", "banyan: metadata is not a mapping (a %s); such metadata "
                'is logged as {"value": metadata}', type(value).__name__,
            )  # fmt: skip
        return as_metadata(value)

    def _large(self, slot: list[bytearray | None], size: int) -> bool:
        """A large record: the thread's buffer is replaced (not kept that big); False, the
        record dropped and counted, when the server would refuse it (no place in the ring,
        nor in the spool)."""
        slot[0] = bytearray()
        if size <= MAX_RECORD_BYTES:
            return True
        error = f"a {size} byte record is over the server's limit of {MAX_RECORD_BYTES} bytes"
        return self._stats.drop_entry(DropReason.TOO_LARGE, error)

    def _push_slow(self, record: Record | Score, data: Encoded) -> bool:
        # No credit (the first record, durable mode, a full ring, after shutdown, in a
        # forked child).
        if not self._here[0]:
            data = self._unforked(record, data)
        return self._push(data)

    def _unforked(self, record: Record | Score, data: Encoded) -> Encoded:
        # A forked child whose hooks did not run (uWSGI without its fork hooks) numbered
        # `record` from its parent's ids: reset for this process and number it again (an id
        # the caller gave stays).
        if self._here[0] or self._pid == _fork.pid():
            return data
        made = self._ids.made(record.id)
        self._after_fork_in_child()
        if not made:
            return data
        record.id = self._next_id()
        return encode(record)

    def _start(self) -> None:
        self._pipeline.start()

    def _encode_slow(self, record: Record) -> bytes | None:
        # Text fields must be text and valid UTF-8 on the wire; metadata becomes plain
        # JSON-like data. None (the record dropped and counted) when even that fails.
        try:
            normalize(record)
            return encode(record)
        except Exception as exc:
            self._stats.drop_entry(DropReason.ENCODE_ERROR, exc)
            return None

    def _send_now(self, record: Record | Score, data: Encoded) -> bool:
        return self._pipeline.send_now(self._unforked(record, data))

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
