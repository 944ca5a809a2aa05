"""Routing at its edges: every validation message, zero traffic, the surrogate range."""

from __future__ import annotations

import pytest

from banyan._routing import Experiment, Variant, utf8, validate


def _experiment(*weights: int, traffic_bp: int = 10_000, hash_version: int = 1) -> Experiment:
    variants = tuple(
        Variant(id=f"v{n}", version=str(n), weight_bp=w) for n, w in enumerate(weights)
    )
    return Experiment(id="e", sticky_key="user_id", seed="s", variants=variants,
                      traffic_bp=traffic_bp, hash_version=hash_version)  # fmt: skip


@pytest.mark.parametrize(
    ("experiment", "problem"),
    [
        (_experiment(10_000, hash_version=2), "unsupported hash_version 2"),
        (_experiment(), "an experiment needs at least one variant"),
        (_experiment(10_001, -1), "variant weights must not be negative"),
        (_experiment(5_000, 4_999), "variant weights must sum to 10000 basis points"),
        (_experiment(10_000, traffic_bp=-1), "traffic_bp must be between 0 and 10000"),
        (_experiment(10_000, traffic_bp=10_001), "traffic_bp must be between 0 and 10000"),
        (_experiment(10_000, traffic_bp=0), None),
        (_experiment(0, 10_000, traffic_bp=10_000), None),
    ],
)
def test_validate_names_each_problem(experiment: Experiment, problem: str | None) -> None:
    """Each unusable configuration gets its own message; zero traffic and a zero-weight
    variant are usable."""
    assert validate(experiment) == problem


def test_every_surrogate_and_only_surrogates_become_the_replacement_character() -> None:
    """U+D800 to U+DFFF alone become U+FFFD; U+E000 next to them stays itself."""
    assert utf8("\ud800\udfff\ue000\ud7ff") == "\ufffd\ufffd\ue000\ud7ff".encode()
