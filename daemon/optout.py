"""Opt-out keywords: a reply that is a keyword, or starts with one, stops the number."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

DEFAULT_KEYWORDS = ("STOP", "UNSUBSCRIBE", "СТОП", "ОТПИСАТЬСЯ", "TD", "退订")
# Trimmed from both ends before matching: "STOP!", "«СТОП»", "退订。" all count.
_TRIM = " \t\r\n.,;:!?¡¿'\"«»“”‘’()[]{}<>-–—…。，、！？；：（）【】「」『』～"


def normalise(text: str) -> str:
    """Width- and case-insensitive form: NFKC turns full-width ＳＴＯＰ into STOP."""
    return unicodedata.normalize("NFKC", text).casefold().strip(_TRIM)


def _is_cjk(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


class OptOutMatcher:
    """Finds the opt-out keyword in a reply, if there is one."""

    def __init__(self, keywords: Iterable[str] = DEFAULT_KEYWORDS) -> None:
        self._keywords = {normalise(k): k for k in keywords if normalise(k)}

    def match(self, text: str) -> str | None:
        """The keyword (as configured) that `text` is or starts with, else None."""
        body = normalise(text)
        if not body:
            return None
        for key, original in self._keywords.items():
            if body == key:
                return original
            if not body.startswith(key):
                continue
            rest = body[len(key):]
            # "STOP please" and "退订谢谢" stop; "STOPPED" and "TDK" do not.
            if rest[0].isspace() or rest[0] in _TRIM or _is_cjk(key[-1]):
                return original
        return None
