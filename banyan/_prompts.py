"""Prompts: ``PromptData``, a per-process TTL cache and local experiment routing.

A prompt fetched from the server may carry its running experiment; routing
a subject is then local (:func:`banyan._routing.choose`), with no round trip.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import msgspec

from banyan._exceptions import BanyanError, HTTPStatusError
from banyan._routing import Experiment, choose
from banyan._stats import Stats
from banyan._wire import PROMPT_PATH, ROUTE_PATH

if TYPE_CHECKING:
    from banyan._transport import Transport


@dataclasses.dataclass(frozen=True)
class PromptData:
    """A prompt version as served to this caller, possibly an experiment's variant.

    Pass it to ``log_prompt(prompt_data=...)``: its ids, version, branch and
    experiment context are logged with the record. Immutable: derive a
    changed copy with :func:`dataclasses.replace`.
    """

    content: str
    version: str | None = None
    branch: str = "main"
    prompt_id: str | None = None
    name: str | None = None
    project: Any = None
    enable_logging: bool = True
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    experiment_id: str | None = None
    experiment_version_id: str | None = None
    variant_name: str | None = None
    sticky_key: str | None = None
    sticky_value: str | None = None
    #: The fields log_prompt copies into a record, unpacked in one step on the
    #: hot path; None when logging is disabled for this prompt.
    _wire: tuple[str | None, ...] | None = dataclasses.field(
        init=False, repr=False, compare=False, default=None
    )

    def __post_init__(self) -> None:
        wire = (
            self.prompt_id, self.name, self.version, self.branch, self.experiment_id,
            self.experiment_version_id, self.sticky_key, self.sticky_value,
        )  # fmt: skip
        object.__setattr__(self, "_wire", wire if self.enable_logging else None)

    def get_experiment_context(self) -> dict[str, Any] | None:
        """The experiment this caller was routed into, or None for the default prompt."""
        if self.experiment_id is None:
            return None
        return {
            "experiment_id": self.experiment_id,
            "experiment_version_id": self.experiment_version_id,
            "variant_name": self.variant_name,
            "version": self.version,
            "sticky_key": self.sticky_key,
            "sticky_value": self.sticky_value,
        }


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def from_json(body: Mapping[str, Any], branch: str = "main") -> PromptData:
    """A :class:`PromptData` from the server's prompt JSON."""
    return PromptData(
        content=str(body.get("content") or ""),
        version=_text(body.get("version")),
        branch=str(body.get("branch") or branch),
        prompt_id=_text(body.get("prompt_id") or body.get("id")),
        name=_text(body.get("name")),
        project=body.get("project"),
        enable_logging=body.get("enable_logging", True) is not False,
        metadata=dict(body.get("metadata") or {}),
    )


@dataclasses.dataclass
class _Entry:
    expires: float
    prompt: PromptData
    experiment: Experiment | None


class Prompts:
    """Fetches prompts through a transport and caches them for ``ttl`` seconds."""

    def __init__(self, transport: Transport, stats: Stats, ttl: float) -> None:
        self._transport = transport
        self._stats = stats
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str, str | None], _Entry] = {}

    def get(
        self,
        name: str,
        version: str | None,
        branch: str,
        sticky_context: Mapping[str, Any] | None,
    ) -> PromptData | None:
        """The prompt for this caller, routed into its experiment when it has one."""
        entry = self._entry(name, branch, version)
        if entry is None:
            return None
        experiment = entry.experiment
        if experiment is None or version is not None:
            return dataclasses.replace(entry.prompt)
        value = (sticky_context or {}).get(experiment.sticky_key)
        if value is None:
            self._stats.add(sticky_missing=1)
            return dataclasses.replace(entry.prompt)
        return self._routed(entry, experiment, str(value))

    def _routed(self, entry: _Entry, experiment: Experiment, value: str) -> PromptData | None:
        variant = choose(experiment, value)
        if variant is None:
            return dataclasses.replace(entry.prompt)
        content = variant.content
        if not content:
            pinned = self._entry(entry.prompt.name or "", entry.prompt.branch, variant.version)
            content = pinned.prompt.content if pinned else entry.prompt.content
        return dataclasses.replace(
            entry.prompt,
            content=content,
            version=variant.version,
            experiment_id=experiment.id,
            experiment_version_id=variant.id,
            variant_name=variant.name or None,
            sticky_key=experiment.sticky_key,
            sticky_value=value,
        )

    def _entry(self, name: str, branch: str, version: str | None) -> _Entry | None:
        key = (name, branch, version)
        with self._lock:
            entry = self._cache.get(key)
        if entry is not None and entry.expires > time.monotonic():
            return entry
        try:
            fresh = self._fetch(name, branch, version)
        except BanyanError as exc:
            self._stats.add(prompt_errors=1)
            if entry is None:
                raise
            self._stats.warn_once("stale-prompt", "banyan: serving a cached prompt: %s", exc)
            return entry
        with self._lock:
            if fresh is None:
                self._cache.pop(key, None)
            else:
                self._cache[key] = fresh
        return fresh

    def _fetch(self, name: str, branch: str, version: str | None) -> _Entry | None:
        params = {"branch": branch}
        if version is not None:
            params["version"] = str(version)
        try:
            response = self._transport.request(
                "GET", PROMPT_PATH.format(name=quote(name, safe="")), params=params
            )
        except HTTPStatusError as exc:
            if exc.status_code == 404:
                return None
            raise
        body = response.json()
        experiment = _experiment(body.get("experiment"), self._stats)
        return _Entry(time.monotonic() + self._ttl, from_json(body, branch), experiment)

    def route(self, experiment_id: str, sticky_key: str, sticky_value: str) -> PromptData | None:
        """The 1.0.1 server-side routing call: one round trip per subject."""
        payload = {
            "experimentId": experiment_id,
            "stickyKey": sticky_key,
            "stickyValue": sticky_value,
            "apiKey": self._transport.api_key,
        }
        try:
            body = self._transport.request("POST", ROUTE_PATH, json=payload).json()
        except HTTPStatusError as exc:
            if exc.status_code == 404:
                return None
            raise
        prompt = from_json(body.get("prompt") or {})
        return dataclasses.replace(
            prompt,
            experiment_id=experiment_id,
            experiment_version_id=_text(body.get("selected_version_id")),
            sticky_key=sticky_key,
            sticky_value=sticky_value,
        )


def _experiment(raw: Any, stats: Stats) -> Experiment | None:
    if not raw:
        return None
    try:
        return msgspec.convert(raw, Experiment)
    except msgspec.ValidationError as exc:
        stats.warn_once("bad-experiment", "banyan: ignoring an unreadable experiment: %s", exc)
        return None
