"""Batch templates: `{name}` placeholders, `{{` and `}}` for literal braces."""

from __future__ import annotations

import re
from collections.abc import Mapping

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


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill `template` with already-stringified `values`."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        name = match.group(1)
        if name:
            if name not in values:
                raise MissingVariable(name)
            return values[name]
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        raise TemplateSyntaxError(f"stray {token!r} at offset {match.start()}")

    return _TOKEN.sub(replace, template)
