"""The module-level API: thin wrappers over one default :class:`PromptStackLogger`."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast, overload

from banyan import _fork
from banyan._client import PromptStackLogger
from banyan._exceptions import NotConfiguredError
from banyan._ledger import Ledger
from banyan._promptdata import PromptData, fallback_prompt
from banyan._stats import DropReason
from banyan._warn import warn_once

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from banyan._types import ConfigureOptions, Statistics

_lock = threading.Lock()
_logger: PromptStackLogger | None = None
_unconfigured = Ledger()


class _Env:
    # Set once configure() ran or the environment was tried: auto-configuration happens once.
    tried = False
    lock = threading.Lock()


def _in_forked_child() -> None:
    # The parent's early drops are the parent's; _Env.lock may have been held by another thread.
    global _unconfigured
    _unconfigured, _Env.lock = Ledger(), threading.Lock()
    if _logger is None:
        # Forked while another thread was configuring from the environment: that thread
        # (and the logger it was building) stayed in the parent; this child tries itself.
        _Env.tried = False


_fork.guard(_lock, _in_forked_child)


def configure(
    api_key: str | None = None,
    project_id: str | None = None,
    base_url: str | None = None,
    **options: Unpack[ConfigureOptions],
) -> PromptStackLogger:
    """Create the default logger used by the module functions and return it.

    Options are :class:`PromptStackLogger`'s. Configuring again replaces the
    previous default logger after flushing it (bounded by its
    ``atexit_timeout``). Raises :class:`~banyan.ConfigurationError`.
    """
    global _logger, _unconfigured
    _Env.tried = True
    logger = PromptStackLogger(api_key=api_key, base_url=base_url, project_id=project_id, **options)
    with _lock:
        old, _logger = _logger, logger
        early, _unconfigured = _unconfigured, Ledger()
    lost = early.dropped[DropReason.NOT_CONFIGURED]
    if lost:
        logger._stats.drop(DropReason.NOT_CONFIGURED, lost, entry=True)
    if old is not None:
        old.shutdown(timeout=old.config.atexit_timeout)
    return logger


def _default() -> PromptStackLogger:
    logger = _logger or _from_env()
    if logger is None:
        raise NotConfiguredError("call banyan.configure(api_key=...) first")
    return logger


def _from_env() -> PromptStackLogger | None:
    """Configure from ``BANYAN_*`` on first use when configure() was never called.

    This is how spawned children (multiprocessing spawn/forkserver, uvicorn
    workers) get a logger without code of their own.
    """
    if _Env.tried or not (os.environ.get("BANYAN_API_KEY") or os.environ.get("BANYAN_DISABLED")):
        return None
    with _Env.lock:
        if not _Env.tried:
            _Env.tried = True
            try:
                configure()
            # Any error: this runs inside log_prompt, which never raises.
            except Exception as exc:
                _unconfigured.warn_once(
                    "env", "banyan: cannot configure from BANYAN_* settings: %s", exc
                )
    return _logger


def _unconfigured_prompt(
    name: str, version: str | None, branch: str, fallback: str | PromptData | None
) -> PromptData:
    # No logger: the fallback, when there is one, is what the caller gets (#16).
    if fallback is None:
        raise NotConfiguredError("call banyan.configure(api_key=...) first")
    warn_once(
        "not-configured-prompt",
        "banyan: get_prompt() called before banyan.configure(); serving fallback=",
    )
    return fallback_prompt(fallback, name, version, branch)


@overload
def get_prompt(
    name: str,
    version: str | None = ...,
    branch: str = ...,
    sticky_context: Mapping[str, Any] | None = ...,
    *,
    fallback: str | PromptData,
) -> PromptData: ...
@overload
def get_prompt(
    name: str,
    version: str | None = ...,
    branch: str = ...,
    sticky_context: Mapping[str, Any] | None = ...,
    fallback: str | PromptData | None = ...,
) -> PromptData | None: ...
def get_prompt(
    name: str,
    version: str | None = None,
    branch: str = "main",
    sticky_context: Mapping[str, Any] | None = None,
    fallback: str | PromptData | None = None,
) -> PromptData | None:
    """Fetch a prompt with the default logger (see :meth:`PromptStackLogger.get_prompt`).

    Before :func:`configure`, ``fallback`` is served (with a warning, once);
    without one :class:`~banyan.NotConfiguredError` is raised.
    """
    logger = _logger or _from_env()
    if logger is None:
        return _unconfigured_prompt(name, version, branch, fallback)
    return logger.get_prompt(name, version, branch, sticky_context, fallback)


@overload
async def aget_prompt(
    name: str,
    version: str | None = ...,
    branch: str = ...,
    sticky_context: Mapping[str, Any] | None = ...,
    *,
    fallback: str | PromptData,
) -> PromptData: ...
@overload
async def aget_prompt(
    name: str,
    version: str | None = ...,
    branch: str = ...,
    sticky_context: Mapping[str, Any] | None = ...,
    fallback: str | PromptData | None = ...,
) -> PromptData | None: ...
async def aget_prompt(
    name: str,
    version: str | None = None,
    branch: str = "main",
    sticky_context: Mapping[str, Any] | None = None,
    fallback: str | PromptData | None = None,
) -> PromptData | None:
    """Await a prompt with the default logger (see :meth:`PromptStackLogger.aget_prompt`)."""
    logger = _logger or _from_env()
    if logger is None:
        return _unconfigured_prompt(name, version, branch, fallback)
    return await logger.aget_prompt(name, version, branch, sticky_context, fallback)


def experiment(experiment_id: str, sticky_key: str, sticky_value: str) -> PromptData | None:
    """Route a subject through the server (see :meth:`PromptStackLogger.experiment`)."""
    return _default().experiment(experiment_id, sticky_key, sticky_value)


def log_prompt(  # noqa: PLR0917 - the 1.0.1 signature, then #18's outcomes
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
    """Log one prompt usage (see :meth:`PromptStackLogger.log_prompt`); never raises.

    Takes the outcomes ``usage``, ``input_tokens``, ``output_tokens``,
    ``cached_input_tokens``, ``cost`` and ``record_id`` too. Before
    :func:`configure` the record is dropped, counted and warned about once.
    """
    logger = _logger or _from_env()
    if logger is None:
        return _not_configured()
    # All positional: the method binds them from the call's argument array.
    return logger.log_prompt(
        input, output, prompt_data, prompt_id, prompt_name, version, branch_name, model,
        metadata, duration_ms, blocking, usage, input_tokens, output_tokens,
        cached_input_tokens, cost, record_id,
    )  # fmt: skip


log = log_prompt


def log_score(
    name: str,
    value: bool | float | str,
    *,
    prompt_data: PromptData | None = None,
    record_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    score_id: str | None = None,
    blocking: bool = False,
) -> bool:
    """Log an outcome (see :meth:`PromptStackLogger.log_score`) through the default logger.

    Raises :class:`~banyan.ScoreError` for bad arguments; before :func:`configure`
    the score is dropped, counted and warned about once.
    """
    logger = _logger or _from_env()
    if logger is None:
        return _not_configured("log_score")
    return logger.log_score(
        name, value, prompt_data=prompt_data, record_id=record_id, metadata=metadata,
        score_id=score_id, blocking=blocking,
    )  # fmt: skip


def _not_configured(function: str = "log_prompt") -> bool:
    _unconfigured.drop(DropReason.NOT_CONFIGURED, entry=True)
    _unconfigured.warn_once(
        f"not-configured-{function}",
        "banyan: %s() called before banyan.configure(); the record is dropped",
        function,
    )
    return False


def flush(timeout: float | None = 30.0) -> bool:
    """Flush the default logger; False (not an error) when it is not configured."""
    logger = _logger
    return logger.flush(timeout) if logger is not None else False


async def aflush(timeout: float | None = 30.0) -> bool:
    """Await :func:`flush` without blocking the event loop; False when not configured."""
    logger = _logger
    return await logger.aflush(timeout) if logger is not None else False


def shutdown(timeout: float | None = 30.0) -> bool:
    """Shut the default logger down; the next :func:`configure` starts afresh.

    The closed logger stays the default until then: :func:`get_stats` keeps its
    final counts, and a later :func:`log_prompt` counts as ``closed``.
    """
    logger = _logger
    return logger.shutdown(timeout) if logger is not None else True


async def ashutdown(timeout: float | None = 30.0) -> bool:
    """Await :func:`shutdown` without blocking the event loop; True when not configured."""
    logger = _logger
    return await logger.ashutdown(timeout) if logger is not None else True


def _reset() -> None:
    """Back to the state before any configure(): no default logger, no early drops (tests)."""
    global _logger, _unconfigured
    shutdown(timeout=1)
    with _lock:
        _logger, _unconfigured = None, Ledger()


def get_stats() -> Statistics:
    """The default logger's counters (only drops before :func:`configure`)."""
    logger = _logger
    if logger is None:
        early: dict[str, Any] = _unconfigured.view()
        return cast("Statistics", early | {"spool_handed_over": 0, "prompt_cache": {}})
    return logger.get_stats()


logging.getLogger("banyan").addHandler(logging.NullHandler())
