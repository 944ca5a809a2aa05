"""HTML and SVG built from escaped parts: text is escaped unless it is already ``Markup``.

Experiment, variant and metric names are user input; building every element
through ``h`` makes escaping the default rather than something to remember.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping

#: HTML elements that have no end tag.
_VOID = frozenset({"meta", "link", "br", "input", "hr"})


class Markup(str):
    """Text that is already HTML and is inserted as it is."""

    __slots__ = ()


def escape(value: object) -> Markup:
    """``value`` as text in HTML (quotes escaped too, so it is safe in attributes)."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def _children(parts: object) -> str:
    if parts is None:
        return ""
    if isinstance(parts, str | int | float):
        return escape(parts)
    return "".join(_children(p) for p in parts)  # type: ignore[attr-defined]


def h(tag: str, attrs: Mapping[str, object] | None = None, *children: object) -> Markup:
    """The element ``<tag attrs>children</tag>``; an attribute of None or False is left out."""
    rendered = "".join(
        f" {name.rstrip('_').replace('_', '-')}" + ("" if value is True else f'="{escape(value)}"')
        for name, value in (attrs or {}).items()
        if value is not None and value is not False
    )
    if tag in _VOID:
        return Markup(f"<{tag}{rendered}>")
    return Markup(f"<{tag}{rendered}>{_children(children)}</{tag}>")


def join(parts: Iterable[object]) -> Markup:
    """Several children as one piece of markup."""
    return Markup(_children(list(parts)))
