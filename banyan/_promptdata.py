"""``PromptData``, a prompt version as served to a caller, and how one is made.

From the server's prompt JSON (:func:`from_json`), from a ``prompt_data`` that
is no PromptData (:func:`as_prompt`: a mapping, or 1.0.1's object) and from a
caller's ``fallback=`` (:func:`fallback_prompt`). The cache that serves them
is :mod:`banyan._prompts`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


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


def optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def from_json(body: Mapping[str, Any], branch: str = "main") -> PromptData:
    """A :class:`PromptData` from the server's prompt JSON."""
    return PromptData(
        content=str(body.get("content") or ""),
        version=optional_str(body.get("version")),
        branch=str(body.get("branch") or branch),
        prompt_id=optional_str(body.get("prompt_id") or body.get("id")),
        name=optional_str(body.get("name")),
        project=body.get("project"),
        enable_logging=body.get("enable_logging", True) is not False,
        metadata=dict(body.get("metadata") or {}),
    )


#: What a PromptData is made of (its constructor's arguments).
_PROMPT_FIELDS = tuple(f.name for f in dataclasses.fields(PromptData) if f.init)
_EXPERIMENT_FIELDS = _PROMPT_FIELDS[_PROMPT_FIELDS.index("experiment_id") :]


def as_prompt(value: Any) -> PromptData:
    """A ``prompt_data`` that is no PromptData, read as one: a mapping of its fields or an
    object with its attributes (1.0.1's PromptData); TypeError when it has none of them."""
    if isinstance(value, Mapping):
        fields = {k: v for k, v in value.items() if k in _PROMPT_FIELDS}
    else:
        fields = {k: getattr(value, k) for k in _PROMPT_FIELDS if hasattr(value, k)}
    if not fields:
        raise TypeError(f"prompt_data must be a PromptData, not {type(value).__name__}")
    experiment: dict[str, Any] = {k: optional_str(fields.get(k)) for k in _EXPERIMENT_FIELDS}
    return dataclasses.replace(from_json(fields, str(fields.get("branch") or "main")), **experiment)


def fallback_prompt(
    fallback: str | PromptData, name: str, version: str | None, branch: str
) -> PromptData:
    """The caller's ``fallback=`` as a :class:`PromptData`."""
    if isinstance(fallback, PromptData):
        return fallback
    return PromptData(content=str(fallback), version=version, branch=branch, name=name)
