"""Deterministic experiment routing, shared by the client and the server.

The algorithm (hash version 1) is specified in docs/protocol.md, "Routing":

* ``bucket(seed, key, value)`` is the first 8 bytes of
  ``sha256(utf8(seed + "." + key + "." + value))`` read as a big-endian
  unsigned integer, modulo 10,000 (basis points).
* A subject is *enrolled* when ``bucket(seed, key, value) < traffic_bp``.
* An enrolled subject gets the variant whose cumulative weight range holds
  ``bucket(seed + ":variant", key, value)``; variants keep their listed
  order, weights are basis points summing to 10,000.

Enrolment and assignment use independent hashes, so raising ``traffic_bp``
only enrols more subjects and never moves an enrolled one to another variant.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import msgspec

HASH_VERSION = 1
BASIS_POINTS = 10_000


class Variant(msgspec.Struct, frozen=True):
    """One arm of an experiment: a prompt version and its share (basis points)."""

    id: str
    version: str
    weight_bp: int
    content: str = ""
    name: str = ""


class Experiment(msgspec.Struct, frozen=True):
    """A running experiment's configuration, as returned with a prompt."""

    id: str
    sticky_key: str
    seed: str
    variants: tuple[Variant, ...]
    traffic_bp: int = BASIS_POINTS
    hash_version: int = HASH_VERSION
    name: str = ""


def bucket(seed: str, key: str, value: str) -> int:
    """Return the subject's bucket in ``[0, 10000)``."""
    digest = hashlib.sha256(f"{seed}.{key}.{value}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BASIS_POINTS


def ranges(weights: Sequence[int]) -> list[tuple[int, int]]:
    """Cumulative half-open ``[start, end)`` ranges for variant weights."""
    out, start = [], 0
    for weight in weights:
        out.append((start, start + weight))
        start += weight
    return out


def choose(experiment: Experiment, value: str) -> Variant | None:
    """The variant for a sticky value, or None when the subject is not enrolled."""
    key, seed = experiment.sticky_key, experiment.seed
    if bucket(seed, key, value) >= experiment.traffic_bp:
        return None
    point = bucket(seed + ":variant", key, value)
    for variant, (start, end) in zip(experiment.variants, ranges(
        [v.weight_bp for v in experiment.variants]
    )):
        if start <= point < end:
            return variant
    return None


def validate(experiment: Experiment) -> str | None:
    """Why an experiment configuration is unusable, or None when it is fine."""
    if experiment.hash_version != HASH_VERSION:
        return f"unsupported hash_version {experiment.hash_version}"
    if not experiment.variants:
        return "an experiment needs at least one variant"
    if any(v.weight_bp < 0 for v in experiment.variants):
        return "variant weights must not be negative"
    if sum(v.weight_bp for v in experiment.variants) != BASIS_POINTS:
        return "variant weights must sum to 10000 basis points"
    if not 0 <= experiment.traffic_bp <= BASIS_POINTS:
        return "traffic_bp must be between 0 and 10000"
    return None


def content_hash(text: str) -> str:
    """The ``input_hash`` sticky value for a text: hex sha256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode()).hexdigest()
