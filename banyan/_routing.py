"""Deterministic experiment routing, shared by the client and the server.

The algorithm (hash version 1) is specified in docs/protocol.md, section 6,
and pinned by ``banyan/routing_vectors.json``:

* ``digest = sha256(utf8(seed + "." + sticky_key + "." + value))``;
* the *enrolment bucket* is ``digest[0:8]`` read as a big-endian unsigned
  integer, modulo 10,000 (basis points); the subject is enrolled when it is
  below ``traffic_bp``;
* the *assignment bucket* is ``digest[8:16]``, read the same way; an enrolled
  subject gets the variant whose cumulative range ``[start, end)`` holds it.

The two buckets come from disjoint bytes of one digest, so they are
independent: raising ``traffic_bp`` only enrols more subjects and never
moves an enrolled one to another variant. One sha256 per routing decision
(not two) keeps a routed cache hit near a microsecond.
"""

from __future__ import annotations

import hashlib
import importlib
import struct
from array import array
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

HASH_VERSION = 1
BASIS_POINTS = 10_000

_sha256 = hashlib.sha256
#: The digest's bytes 0-7 and 8-15 as two big-endian unsigned 64-bit integers.
_two_u64 = struct.Struct(">QQ").unpack_from
#: Only bytes 8-15 (the assignment bucket's), for full traffic: one integer less to build.
_assignment_u64 = struct.Struct(">8xQ").unpack_from


def _short_sha256() -> Callable[[bytes], Any]:
    """CPython's built-in SHA-256 when the build has it, else hashlib's (OpenSSL)."""
    # For one 64-byte block, OpenSSL's per-call overhead dominates: EVP copy() and digest()
    # each allocate a context. The built-in copies a struct: ~0.15 us less per new value
    # (issue #4). Same function, same digests; "_sha2" from Python 3.12, "_sha256" before.
    for name in ("_sha2", "_sha256"):
        try:
            constructor: Callable[[bytes], Any] = importlib.import_module(name).sha256
        except (ImportError, AttributeError):
            continue
        return constructor
    return _sha256


#: Hashes sticky values (short); content_hash keeps OpenSSL, faster for long texts.
_sha256_short = _short_sha256()


class Variant(msgspec.Struct, frozen=True):
    """One arm of an experiment: a prompt version and its share (basis points)."""

    id: str
    version: str
    weight_bp: int
    #: None when the server left it out: the client then fetches the pinned version.
    content: str | None = None
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


def utf8(text: str) -> bytes:
    """UTF-8 bytes of ``text``; a lone surrogate becomes U+FFFD (as WHATWG TextEncoder does)."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text).encode()


def buckets(seed: str, key: str, value: str) -> tuple[int, int]:
    """The subject's ``(enrolment, assignment)`` buckets, each in ``[0, 10000)``."""
    enrol, assign = _two_u64(_sha256(utf8(f"{seed}.{key}.{value}")).digest())
    return enrol % BASIS_POINTS, assign % BASIS_POINTS


def bucket(seed: str, key: str, value: str) -> int:
    """The subject's enrolment bucket in ``[0, 10000)``."""
    return buckets(seed, key, value)[0]


def ranges(weights: Sequence[int]) -> list[tuple[int, int]]:
    """Cumulative half-open ``[start, end)`` ranges for variant weights."""
    out, start = [], 0
    for weight in weights:
        out.append((start, start + weight))
        start += weight
    return out


def variant_table(weights: Sequence[int]) -> array[int]:
    """Each assignment bucket's variant position, -1 where no range holds it.

    The first range whose end exceeds a bucket holds it (as a scan of :func:`ranges` finds),
    for any weights, validated or not.
    """
    code = "b" if len(weights) < 128 else "i"
    table, covered = array(code, [-1]) * BASIS_POINTS, 0
    for index, (_, stop) in enumerate(ranges(weights)):
        end = min(stop, BASIS_POINTS)
        if end > covered:
            table[covered:end] = array(code, [index]) * (end - covered)
            covered = end
    return table


class Router:
    """One experiment compiled for routing: its hash prefix and a bucket-to-variant table."""

    __slots__ = ("_prefix_state", "_table", "_traffic", "sticky_key", "variants")

    def __init__(self, experiment: Experiment) -> None:
        # utf8() works code point by code point, so utf8(a + b) == utf8(a) + utf8(b);
        # copying this hashed prefix is ~0.1 us cheaper than a new sha256 per value.
        self._prefix_state = _sha256_short(utf8(f"{experiment.seed}.{experiment.sticky_key}."))
        self._traffic = experiment.traffic_bp
        self.sticky_key = experiment.sticky_key
        # 10,000 entries (10 KB): one subscript instead of a scan of the ranges, ~60 ns less.
        self._table = variant_table([v.weight_bp for v in experiment.variants])
        self.variants = experiment.variants

    def index(self, value: str) -> int:
        """Where in ``variants`` the sticky value's variant is; -1 when not enrolled."""
        if not value:
            return -1
        sha = self._prefix_state.copy()
        try:
            sha.update(value.encode())
        except UnicodeEncodeError:
            sha.update(utf8(value))
        point: int
        if self._traffic < BASIS_POINTS:
            enrol, point = _two_u64(sha.digest())
            if enrol % BASIS_POINTS >= self._traffic:
                return -1
        else:
            # At full traffic (the usual case) every bucket is enrolled: skip that bucket.
            (point,) = _assignment_u64(sha.digest())
        return self._table[point % BASIS_POINTS]

    def choose(self, value: str) -> Variant | None:
        """The variant for a sticky value, or None when the subject is not enrolled."""
        index = self.index(value)
        return None if index < 0 else self.variants[index]


def choose(experiment: Experiment, value: str) -> Variant | None:
    """The variant for a sticky value, or None when the subject is not enrolled.

    An empty value is never enrolled (it is a missing value, see :func:`sticky_value`).
    """
    return Router(experiment).choose(value)


def sticky_value(raw: Any) -> str | None:
    """The sticky value routed for a context entry; None (not routed) when missing or empty.

    Strings are used as they are (a ``str`` subclass, such as a string enum, by
    its text); anything else is converted with ``str()`` (portable for
    integers: their decimal digits). A callable is missing: its ``str()``
    holds a memory address, which would route the subject differently in
    every process (``{"input_hash": content_hash}`` meant for
    ``content_hash(text)``).
    """
    if raw is None or callable(raw):
        return None
    value = str.__str__(raw) if isinstance(raw, str) else str(raw)
    return value or None


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
    """The ``input_hash`` sticky value of a text: lowercase hex sha256 of its UTF-8 bytes.

    No normalisation happens: "é" (U+00E9) and "e" + U+0301 hash differently.
    """
    return _sha256(utf8(text)).hexdigest()
