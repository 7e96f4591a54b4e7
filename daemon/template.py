"""Batch templates: `{name}` placeholders, `{{` and `}}` for literal braces."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

COMPILED_CACHE = 64
_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")


class TemplateSyntaxError(ValueError):
    """A brace that is neither a placeholder nor doubled."""


class MissingVariable(KeyError):
    """A placeholder with no value in `vars`."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def placeholders(template: str) -> list[str]:
    """Names used by `template`, in order; raises TemplateSyntaxError on a stray brace."""
    names = []
    for match in _TOKEN.finditer(template):
        token = match.group(0)
        if match.group(1):
            names.append(match.group(1))
        elif token not in ("{{", "}}"):
            raise TemplateSyntaxError(f"stray {token!r} at offset {match.start()}")
    return names


@dataclass(frozen=True)
class Compiled:
    """A template cut once into literal text and placeholder names, to fill many times."""

    pieces: tuple[tuple[str, str | None], ...]  # (literal, name of the slot after it)
    names: frozenset[str]

    def fill(self, values: Mapping[str, str]) -> str:
        """The text with `values` inserted; raises MissingVariable."""
        out = []
        for literal, name in self.pieces:
            out.append(literal)
            if name is not None:
                try:
                    out.append(values[name])
                except KeyError:
                    raise MissingVariable(name) from None
        return "".join(out)


@lru_cache(maxsize=COMPILED_CACHE)
def compile_template(template: str) -> Compiled:
    """Cut `template` up (cached: a batch fills one template for every message)."""
    pieces: list[tuple[str, str | None]] = []
    literal: list[str] = []
    names = placeholders(template)  # raises TemplateSyntaxError on a stray brace
    at = 0
    for match in _TOKEN.finditer(template):
        literal.append(template[at:match.start()])
        at = match.end()
        if match.group(1):
            pieces.append(("".join(literal), match.group(1)))
            literal = []
        else:
            literal.append(match.group(0)[0])  # "{{" -> "{", "}}" -> "}"
    literal.append(template[at:])
    pieces.append(("".join(literal), None))
    return Compiled(tuple(pieces), frozenset(names))


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill `template` with already-stringified `values`."""
    return compile_template(template).fill(values)

