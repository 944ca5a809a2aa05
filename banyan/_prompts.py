"""Prompts: the prompt cache and local experiment routing (``PromptData`` is in
:mod:`banyan._promptdata`).

A prompt fetched from the server may carry its running experiment; routing
a subject is then local (:func:`banyan._routing.choose`), with no round trip.

The cache (per client and process) is keyed by project, name, version and
branch. A hit is one ``dict.get`` plus, for an experiment, one memo lookup
per sticky value. Past ``cache_ttl`` an entry is served stale while the
background refresher fetches it again; a failed refresh keeps serving it
(counted), a 404 evicts it. A cold miss fetches synchronously and, when the
backend is down, falls back to the on-disk copy (:mod:`banyan._diskcache`),
then to the caller's ``fallback``. ``cache_ttl=0`` disables caching.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import msgspec

from banyan._cache import ROUTED_MEMO, Arm, Counters, Entry, Refresher, evict_lru
from banyan._diskcache import DiskCache, default_dir
from banyan._exceptions import BanyanError, HTTPStatusError
from banyan._promptdata import PromptData, fallback_prompt, from_json, optional_str
from banyan._record import clean
from banyan._routing import Experiment, sticky_value, validate
from banyan._stats import Stats
from banyan._wire import PROMPT_PATH, ROUTE_PATH

if TYPE_CHECKING:
    from banyan._config import Config
    from banyan._transport import Transport

#: (project, name, version, branch)
Key = tuple[str, str, str | None, str]
_monotonic = time.monotonic

#: A PromptData with no attributes yet; what a routed PromptData starts as (see Prompts.get).
_new_prompt = functools.partial(object.__new__, PromptData)
# The __dict__ descriptor itself: ~0.1 us cheaper than object.__setattr__(obj, "__dict__", ...).
_set_dict = PromptData.__dict__["__dict__"].__set__


def path_segment(name: str) -> str:
    """``name`` as one URL path segment: every reserved character percent-encoded, and
    ``.`` and ``..`` spelled with %2E, or URL resolution would drop them (RFC 3986, 5.2.4)."""
    segment = quote(name, safe="")
    return segment.replace(".", "%2E") if segment in {".", ".."} else segment


#: What :meth:`Prompts.get` returns with ``block=False`` on a cold miss.
MISS: Any = object()


class Prompts:
    """Fetches prompts through a transport, caches them and routes experiments locally."""

    def __init__(self, transport: Transport, stats: Stats, config: Config) -> None:
        self._transport = transport
        self._stats = stats
        self._ttl = config.cache_ttl
        # After a failed refresh, the next one waits this long (at most 5 s, at most the TTL).
        self._retry = min(self._ttl, 5.0)
        self._limit = config.cache_max_entries
        self._project = config.project_id or ""
        self._lock = threading.Lock()
        self._entries: dict[Key, Entry] = {}
        #: Cold fetches under way, which other callers of the same key wait for.
        self._loading: dict[Key, Future[Entry | None]] = {}
        self._wait = config.timeout
        self.counters = Counters()
        self._refresher: Refresher[Key] = Refresher(self._refresh)
        self._disk: DiskCache | None = None
        if config.disk_cache and self._ttl > 0:
            directory = Path(config.cache_dir) if config.cache_dir else default_dir()
            self._disk = DiskCache(
                directory, config.base_url, config.api_key, config.project_id, self._limit
            )

    @property
    def disk_path(self) -> Path | None:
        """The on-disk cache file of this client's project (None when disabled)."""
        return None if self._disk is None else self._disk.path

    def get(
        self,
        name: str,
        version: str | None = None,
        branch: str = "main",
        sticky_context: Mapping[str, Any] | None = None,
        fallback: str | PromptData | None = None,
        *,
        block: bool = True,
    ) -> PromptData | None:
        """The prompt for this caller, routed into its experiment when it has one."""
        key = (self._project, name, version, branch)
        entry = self._entries.get(key)
        if entry is not None:
            now = _monotonic()
            entry.used = now
            if entry.expires > now:
                self.counters.hits += 1
            else:
                self._serve_stale(key, entry, now)
        else:
            found = self._miss(key, fallback, block)
            if not isinstance(found, Entry):
                return found
            entry = found
        router = entry.router
        if router is None:
            return entry.prompt
        # Routing stays inline here: a call less per routed hit (~50 ns of ~2 us for a new value).
        raw = sticky_context.get(router.sticky_key) if sticky_context else None
        # Most sticky values are non-empty strings: skip the call to sticky_value().
        value = raw if raw.__class__ is str and raw else sticky_value(raw)
        if value is None:
            # Documented: a missing sticky value gets the fetched version, never a random one.
            self._stats.add(sticky_missing=1)
            return entry.prompt
        memo = entry.routed
        routed = memo.get(value)
        if routed is not None:
            return routed
        index = router.index(value)
        if index < 0:
            routed = entry.prompt
        else:
            arm = entry.arms[index] or self._arm(entry, index)
            # A clone of the variant's attribute dict, bypassing __init__ (replace() costs ~5 us).
            fields, logged, p_id, p_name, p_version, p_branch, e_id, ev_id, s_key = arm
            fields = fields.copy()
            # The value as routed and logged: a lone surrogate becomes U+FFFD.
            shown = value if value.isascii() else clean(value)
            fields["sticky_value"] = shown
            if logged:
                fields["_wire"] = (p_id, p_name, p_version, p_branch, e_id, ev_id, s_key, shown)
            routed = _new_prompt()
            _set_dict(routed, fields)
        if len(memo) >= ROUTED_MEMO:
            memo.clear()
        memo[value] = routed
        return routed

    def _miss(
        self, key: Key, fallback: str | PromptData | None, block: bool
    ) -> Entry | PromptData | None:
        """A cold miss: the fetched entry, or what get() returns instead (MISS, None, fallback)."""
        if not block:
            return MISS  # type: ignore[no-any-return]
        try:
            found = self._cold(key)
        except BanyanError:
            if fallback is None:
                raise
            found = None
        if found is not None or fallback is None:
            return found
        # The server is down, or has no such prompt (404): fallback= wins either way.
        self.counters.fallbacks += 1
        self._stats.warn_once("prompt-fallback", "banyan: serving fallback= prompts")
        return fallback_prompt(fallback, *key[1:])

    def _arm(self, entry: Entry, index: int) -> Arm:
        """What a variant's routed PromptData is cloned from, made once per entry and variant."""
        experiment = entry.experiment
        assert experiment is not None
        variant = experiment.variants[index]
        content = variant.content
        if content is None:
            pinned = self.get(entry.prompt.name or "", variant.version, entry.prompt.branch)
            content = pinned.content if pinned else entry.prompt.content
        template = dataclasses.replace(
            entry.prompt, content=content, version=variant.version,
            experiment_id=experiment.id, experiment_version_id=variant.id,
            variant_name=variant.name or None, sticky_key=experiment.sticky_key,
        )  # fmt: skip
        p_id, name, version, branch, e_id, ev_id, key, _ = template._wire or (None,) * 8
        arm = (template.__dict__, template.enable_logging, p_id, name, version, branch, e_id,
               ev_id, key)  # fmt: skip
        entry.arms[index] = arm
        return arm

    def _serve_stale(self, key: Key, entry: Entry, now: float) -> None:
        self.counters.stale += 1
        if now >= entry.retry_at:
            # Before submit(): a refresh that fails at once sets its own backoff, which stands.
            entry.retry_at = now + self._retry
            self._refresher.submit(key)

    def _cold(self, key: Key) -> Entry | None:
        """A cold miss: one fetch per key at a time, which the other callers wait for."""
        self.counters.misses += 1
        with self._lock:
            loading = self._loading.get(key)
            if loading is None:
                loading = self._loading[key] = Future()
                leader = True
            else:
                leader = False
        if not leader:
            try:
                # The leader's entry, or its exception (then fallback= applies as for it).
                return loading.result(self._wait)
            except FutureTimeout:
                return self._load(key)  # the leader is stuck: fetch for ourselves
        try:
            entry = self._load(key)
        except BaseException as exc:
            interrupted = BanyanError("the prompt fetch was interrupted")
            loading.set_exception(exc if isinstance(exc, Exception) else interrupted)
            raise
        else:
            loading.set_result(entry)
        finally:
            with self._lock:
                del self._loading[key]
        return entry

    def _load(self, key: Key) -> Entry | None:
        """Fetch a prompt (from disk when the backend fails) and cache it."""
        try:
            entry = self._fetch(key)
        except BanyanError as exc:
            self._stats.add(prompt_errors=1)
            entry = self._from_disk(key)
            if entry is None:
                raise
            self._stats.warn_once(
                "disk-prompt", "banyan: backend unreachable (%s); serving prompts from %s",
                exc, self.disk_path,
            )  # fmt: skip
        if entry is not None and self._ttl > 0:
            self._install(key, entry)
        return entry

    def _from_disk(self, key: Key) -> Entry | None:
        if self._disk is None:
            return None
        try:
            body = self._disk.get(key[1:])
            if body is None:
                return None
            entry = self._entry(body, key[3])
        except (OSError, TypeError, ValueError):
            self.counters.disk_errors += 1
            return None
        self.counters.disk_served += 1
        # Stale at once: the refresher tries the backend again after the backoff.
        entry.expires = 0.0
        entry.retry_at = _monotonic() + self._retry
        return entry

    def _install(self, key: Key, entry: Entry) -> None:
        entry.used = _monotonic()
        with self._lock:
            self._entries[key] = entry
            if len(self._entries) > self._limit:
                self.counters.evicted_lru += evict_lru(self._entries, self._limit)

    def _refresh(self, key: Key) -> None:
        """The refresher's work: fetch again; on failure keep the stale entry (counted)."""
        try:
            self.counters.refreshes += 1
            entry = self._fetch(key)
        except Exception as exc:
            self.counters.refresh_failures += 1
            self._stats.add(prompt_errors=1)
            stale = self._entries.get(key)
            if stale is not None:
                # Back off from when the refresh failed, not when it was queued.
                stale.retry_at = _monotonic() + self._retry
            self._stats.warn_once(
                "stale-prompt", "banyan: refreshing a prompt failed, serving the cached copy: %s",
                exc,
            )  # fmt: skip
            return
        if entry is not None:
            self._install(key, entry)

    def _fetch(self, key: Key) -> Entry | None:
        """GET the prompt; None (and evicted everywhere) on 404; BanyanError otherwise."""
        _, name, version, branch = key
        params = {"branch": branch}
        if version is not None:
            params["version"] = str(version)
        try:
            response = self._transport.request(
                "GET", PROMPT_PATH.format(name=path_segment(name)), params=params
            )
        except HTTPStatusError as exc:
            if exc.status_code != 404:
                raise
            self._evict(key)
            return None
        try:
            body = response.json()
            if not isinstance(body, dict):
                raise TypeError(f"not an object: {body!r:.80}")
            entry = self._entry(body, branch)
        except (TypeError, ValueError) as exc:
            # A proxy or web page answering 200 is the backend being unreachable, not a bug.
            raise BanyanError(f"the server sent an unreadable prompt: {exc}") from None
        old = self._entries.get(key)
        if old is None or old.body != body:
            self._save(key, body)
        return entry

    def _entry(self, body: dict[str, Any], branch: str) -> Entry:
        experiment = _experiment(body.get("experiment"), self._stats)
        return Entry(from_json(body, branch), experiment, body, _monotonic() + self._ttl)

    def _evict(self, key: Key) -> None:
        with self._lock:
            gone = self._entries.pop(key, None)
        if gone is not None:
            self.counters.evicted_404 += 1
        self._save(key, None)

    def _save(self, key: Key, body: dict[str, Any] | None) -> None:
        if self._disk is None:
            return
        try:
            self._disk.store(key[1:], body)
        except OSError as exc:
            self.counters.disk_errors += 1
            self._stats.warn_once("disk-cache", "banyan: cannot write the prompt cache: %s", exc)

    def stats(self) -> dict[str, int]:
        """The cache counters for ``get_stats()``."""
        return self.counters.snapshot(len(self._entries))

    def inherit(self, parent: Prompts) -> None:
        """Start with a parent process's cached entries (after fork); refresher stays ours."""
        with self._lock:
            self._entries.update(parent._entries)

    def close(self, timeout: float = 1.0) -> None:
        """Stop the background refresher, waiting at most ``timeout`` for it."""
        self._refresher.close(timeout)

    def route(self, experiment_id: str, sticky_key: str, raw: Any) -> PromptData | None:
        """The 1.0.1 server-side routing call: one round trip per subject.

        The value is taken as ``get_prompt`` takes it (:func:`sticky_value`), so that
        both calls agree: None or empty is missing (the server then serves the default).
        """
        value = sticky_value(raw)
        payload = {
            "experimentId": experiment_id,
            "stickyKey": sticky_key,
            "stickyValue": "" if value is None else clean(value),
            "apiKey": self._transport.api_key,
        }
        try:
            body = self._transport.request("POST", ROUTE_PATH, json=payload).json()
            prompt = from_json(body.get("prompt") or {})
        except HTTPStatusError as exc:
            if exc.status_code == 404:
                return None
            raise
        except (AttributeError, TypeError, ValueError) as exc:
            raise BanyanError(f"the server sent an unreadable route answer: {exc}") from None
        if not body.get("selected_version_id"):
            return prompt
        variant = body.get("variant") or {}
        return dataclasses.replace(
            prompt,
            experiment_id=experiment_id,
            experiment_version_id=optional_str(body.get("selected_version_id")),
            variant_name=optional_str(variant.get("name") or None),
            # The experiment's own key: the caller's may differ (the server routes by value).
            sticky_key=optional_str(body.get("sticky_key")) or sticky_key,
            sticky_value=payload["stickyValue"],
        )


def _experiment(raw: Any, stats: Stats) -> Experiment | None:
    if not raw:
        return None
    try:
        experiment = msgspec.convert(raw, Experiment)
    except msgspec.ValidationError as exc:
        stats.warn_once("bad-experiment", "banyan: ignoring an unreadable experiment: %s", exc)
        return None
    problem = validate(experiment)
    if problem is not None:
        # Not routed: every subject gets the fetched version (docs/protocol.md, section 6).
        stats.warn_once("bad-experiment", "banyan: not routing experiment %s: %s",
                        experiment.id, problem)  # fmt: skip
        return None
    return experiment
