"""Routing statistics and invariants: shares, ramps, independence, missing keys."""

from __future__ import annotations

import enum
import hashlib
import importlib
import itertools
from collections import Counter

import pytest

import banyan
from banyan import _routing
from banyan._routing import Experiment, Router, Variant

IDS = [f"user-{i}" for i in range(100_000)]
#: chi-square critical values at p = 0.001 by degrees of freedom.
CHI2_999 = {1: 10.828, 2: 13.816, 4: 18.467}


def experiment(seed: str, weights: list[int], traffic_bp: int = 10_000) -> Experiment:
    variants = tuple(Variant(f"v{i}", str(i), w) for i, w in enumerate(weights))
    return Experiment(id=seed, sticky_key="user_id", seed=seed, variants=variants,
                      traffic_bp=traffic_bp)  # fmt: skip


def assignments(exp: Experiment) -> list[str | None]:
    router = Router(exp)
    return [v.id if v else None for v in map(router.choose, IDS)]


def chi_square(pairs: list[tuple[object, object]]) -> tuple[float, int]:
    """Pearson's statistic for independence of the two components, and its dof."""
    joint = Counter(pairs)
    left, right = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    n = len(pairs)
    stat = sum(
        (joint[(a, b)] - left[a] * right[b] / n) ** 2 / (left[a] * right[b] / n)
        for a, b in itertools.product(left, right)
    )
    return stat, (len(left) - 1) * (len(right) - 1)


def test_100k_ids_split_50_30_20_within_one_percent_and_stably() -> None:
    """100,000 synthetic ids land within ±1 point of 50/30/20, with pinned exact counts."""
    exp = experiment("stat-seed", [5000, 3000, 2000])
    counts = Counter(assignments(exp))
    for variant, share in (("v0", 0.5), ("v1", 0.3), ("v2", 0.2)):
        assert abs(counts[variant] / len(IDS) - share) <= 0.01, counts
    # Stable: a recomputation and the pinned figures agree exactly (any drift is a spec change).
    assert Counter(assignments(exp)) == counts
    assert (counts["v0"], counts["v1"], counts["v2"]) == (50172, 29787, 20041)


def test_ramp_from_10_to_50_percent_moves_no_enrolled_id() -> None:
    """Raising traffic only enrols more ids: every id enrolled at 10 % keeps its variant."""
    low = assignments(experiment("ramp", [5000, 5000], traffic_bp=1000))
    high = assignments(experiment("ramp", [5000, 5000], traffic_bp=5000))
    enrolled = [(a, b) for a, b in zip(low, high, strict=True) if a is not None]
    assert all(a == b for a, b in enrolled)
    assert abs(len(enrolled) / len(IDS) - 0.10) <= 0.01
    assert abs(sum(b is not None for b in high) / len(IDS) - 0.50) <= 0.01


def test_experiments_on_different_seeds_are_independent() -> None:
    """Variant of experiment A tells nothing about variant of experiment B (chi-square, p=0.001)."""
    a = assignments(experiment("seed-a", [5000, 5000]))
    b = assignments(experiment("seed-b", [5000, 3000, 2000]))
    stat, dof = chi_square(list(zip(a, b, strict=True)))
    assert dof == 2
    assert stat < CHI2_999[dof], stat


def test_enrolment_and_assignment_are_independent() -> None:
    """Within one experiment at 50 % traffic, being enrolled says nothing about the variant."""
    exp = experiment("within", [5000, 5000])
    pairs: list[tuple[object, object]] = []
    for value in IDS:
        enrol, point = _routing.buckets(exp.seed, exp.sticky_key, value)
        pairs.append((enrol < 5000, point < 5000))
    stat, dof = chi_square(pairs)
    assert stat < CHI2_999[dof], stat


@pytest.mark.parametrize("raw", [None, ""])
def test_missing_or_empty_sticky_value_is_not_routed(raw: object) -> None:
    """None and "" are missing values: never routed, on the client or through choose()."""
    assert _routing.sticky_value(raw) is None
    assert _routing.choose(experiment("s", [10_000]), "") is None


def test_sticky_values_are_text() -> None:
    """Strings are used as they are; integers route as their decimal digits."""
    assert _routing.sticky_value("u-1") == "u-1"
    assert _routing.sticky_value(42) == "42"
    exp = experiment("s", [5000, 5000])
    assert _routing.choose(exp, "42") == _routing.choose(exp, _routing.sticky_value(42) or "")


def test_string_enums_route_by_text_and_callables_are_missing() -> None:
    """A str subclass routes as its text (not "Cls.MEMBER"); a function, whose str() holds
    a memory address, is a missing value instead of a different variant in every process."""

    class Plan(str, enum.Enum):
        PRO = "pro"

    assert _routing.sticky_value(Plan.PRO) == "pro"
    assert _routing.sticky_value(banyan.content_hash) is None
    assert _routing.sticky_value(lambda: "u-1") is None


def test_zero_weight_variant_is_never_chosen() -> None:
    """A 0 bp variant has an empty range and gets nobody."""
    counts = Counter(assignments(experiment("zero", [0, 10_000]))[:20_000])
    assert counts == {"v1": 20_000}


def test_traffic_bounds() -> None:
    """traffic_bp 0 enrols nobody and 10000 everybody."""
    assert set(assignments(experiment("t", [10_000], traffic_bp=0))[:5000]) == {None}
    assert set(assignments(experiment("t", [10_000]))[:5000]) == {"v0"}


def test_validate_refuses_unusable_configurations() -> None:
    """Unknown hash version, no variants, bad weights and bad traffic are each named."""
    good = experiment("v", [5000, 5000])
    assert _routing.validate(good) is None
    bad = [
        Experiment("e", "user_id", "s", good.variants, hash_version=2),
        Experiment("e", "user_id", "s", ()),
        experiment("v", [-1, 10_001]),
        experiment("v", [5000, 4000]),
        experiment("v", [10_000], traffic_bp=10_001),
    ]
    problems = [_routing.validate(b) for b in bad]
    assert all(problems), problems
    assert "hash_version" in (problems[0] or "")


def test_content_hash_is_exact_utf8_sha256_without_normalisation() -> None:
    """content_hash hashes the exact UTF-8 bytes: NFC and NFD forms differ."""
    assert banyan.content_hash("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert banyan.content_hash("é") != banyan.content_hash("e\u0301")
    assert banyan.content_hash("\ud800") == banyan.content_hash("\ufffd")


def test_lone_surrogates_hash_as_replacement_character() -> None:
    """A lone surrogate in a sticky value routes like U+FFFD (WHATWG TextEncoder's rule)."""
    assert _routing.buckets("s", "k", "a\udc00b") == _routing.buckets("s", "k", "a\ufffdb")
    exp = experiment("s", [5000, 5000])
    assert Router(exp).choose("a\udc00b") == Router(exp).choose("a\ufffdb")


def reference_index(exp: Experiment, value: str) -> int:
    """docs/protocol.md "Routing" step by step, with hashlib's sha256: -1 when not enrolled."""
    enrol, point = _routing.buckets(exp.seed, exp.sticky_key, value)
    if not value or enrol >= exp.traffic_bp:
        return -1
    spans = _routing.ranges([v.weight_bp for v in exp.variants])
    return next(i for i, (start, end) in enumerate(spans) if start <= point < end)


def test_one_router_reused_agrees_with_the_spec_for_every_value() -> None:
    """Router.index/choose (prefix state copied per value) match a from-scratch computation."""
    exp = experiment("reuse-seed", [3400, 3300, 3300], traffic_bp=7000)
    values = [*IDS[:2000], "", "é", "e\u0301", "\ud800", "😀", "user-1", "x" * 300] * 2
    router = Router(exp)
    indexes = [router.index(v) for v in values]
    assert indexes == [reference_index(exp, v) for v in values]
    assert {-1, 0, 1, 2} <= set(indexes)
    assert [router.choose(v) for v in values] == [
        None if i < 0 else exp.variants[i] for i in indexes
    ]


@pytest.mark.parametrize(
    "weights",
    [[5000, 3000, 2000], [0, 10_000], [10_000, 0], [3000, 3000], [6000, 6000],
     [-500, 4000, 6500], [4000, -1000, 7000], [1] * 130 + [9870]],
)  # fmt: skip
def test_variant_table_is_the_first_range_holding_each_bucket(weights: list[int]) -> None:
    """The router's bucket table equals a scan of the ranges, -1 past them, for any weights."""
    spans = _routing.ranges(weights)
    scan = [next((i for i, (_, end) in enumerate(spans) if b < end), -1) for b in range(10_000)]
    assert list(_routing.variant_table(weights)) == scan


def test_sticky_value_hasher_is_sha256_with_a_hashlib_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The built-in SHA-256 the router prefers digests like hashlib's; without it, hashlib's."""
    short = _routing._short_sha256()
    for data in (b"", b"abc", "😀".encode() * 40):
        assert short(data).digest() == hashlib.sha256(data).digest()

    def missing(name: str) -> None:
        raise ImportError(name)

    monkeypatch.setattr(importlib, "import_module", missing)
    assert _routing._short_sha256() is hashlib.sha256
