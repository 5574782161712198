"""Text as keyword rules compare it.

Members type on phones with every input method there is: full-width Latin letters and digits (``ＳＡＬＥ１``),
ideographic spaces, mixed case, several spaces in a row. :func:`normalize` folds all of that away so a rule
written as ``#sale`` matches ``＃ＳＡＬＥ``; Traditional Chinese is left as it is (NFKC does not touch it).
"""

from __future__ import annotations

import unicodedata

__all__ = ["normalize"]


def normalize(text: str) -> str:
    """``text`` in NFKC, case-folded, with every run of whitespace one space and no space at either end.

    A second NFKC pass after ``casefold()`` keeps the result stable: case folding can produce sequences that
    NFKC composes (Greek with combining marks, dotted capital I, …), and without it ``normalize`` would not be
    idempotent for such text. Both passes return at once on text that is already normalized.
    """
    if text.isascii():
        # NFKC leaves ASCII alone and casefold() is lower() on it: the common case, without the table lookups.
        return " ".join(text.lower().split())
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return " ".join(folded.split())
