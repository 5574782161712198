"""What the comment parser needs to know about a live session's products (pure data, no I/O).

Names are compared folded (:func:`fold_name`): NFKC, case-folded, the minus sign ``−`` read as ``-`` and
whitespace runs as one space, so ``Ａ０１``, ``a01`` and ``A01`` are the same code. The lookups are computed
once per instance (the dataclasses are frozen; ``cached_property`` stores next to the fields, outside
equality and hashing).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

_MINUS_SIGNS = str.maketrans({"\u2212": "-"})  # NFKC already folds the full-width "－" and the small "﹣"


def fold(text: str) -> str:
    """NFKC, case-folded (then NFKC again: case folding can denormalize), ``−`` as ``-``; whitespace kept."""
    once = unicodedata.normalize("NFKC", text)
    return unicodedata.normalize("NFKC", once.casefold()).translate(_MINUS_SIGNS)


def fold_name(text: str) -> str:
    """:func:`fold`, with whitespace runs as one space and no edge whitespace: how names are compared."""
    return " ".join(fold(text).split())


@dataclass(frozen=True)
class CatalogVariant:
    """One variant of a product, named by its words: ``("紅", "L")`` is the red, size L variant.

    ``name`` is how orders spell it (the words joined by one space, as configured)."""

    words: tuple[str, ...]

    @property
    def name(self) -> str:
        return " ".join(self.words)

    @cached_property
    def folded_words(self) -> frozenset[str]:
        """The words folded, as a set (a configured word with spaces in it counts as its parts)."""
        return frozenset(part for word in self.words for part in fold_name(word).split())


@dataclass(frozen=True)
class CatalogProduct:
    code: str
    aliases: tuple[str, ...] = ()
    variants: tuple[CatalogVariant, ...] = ()

    @cached_property
    def variant_words(self) -> frozenset[str]:
        """Every folded word of any of the variants: the words a buyer may write after the code."""
        return frozenset[str]().union(*(variant.folded_words for variant in self.variants))

    def variant_for(self, words: Iterable[str]) -> CatalogVariant | None:
        """The one variant whose words are ``words`` (folded, as a set); None if none or several are."""
        wanted = frozenset(part for word in words for part in fold_name(word).split())
        if not wanted:
            return None
        matches = [variant for variant in self.variants if variant.folded_words == wanted]
        return matches[0] if len(matches) == 1 else None


@dataclass(frozen=True)
class Catalog:
    """The products of a session and the featured one (what a bare ``+1`` buys)."""

    products: tuple[CatalogProduct, ...] = ()
    featured: str | None = None

    @cached_property
    def names(self) -> Mapping[str, CatalogProduct]:
        """Folded code or alias -> product. A code wins over another product's alias; else the first wins."""
        by_name: dict[str, CatalogProduct] = {}
        for product in self.products:
            by_name.setdefault(fold_name(product.code), product)
        for product in self.products:
            for alias in product.aliases:
                by_name.setdefault(fold_name(alias), product)
        by_name.pop("", None)
        return by_name

    def find(self, name: str) -> CatalogProduct | None:
        """The product with this code or alias, compared folded."""
        return self.names.get(fold_name(name))

    @cached_property
    def featured_product(self) -> CatalogProduct | None:
        """The product ``featured`` names (by code or alias); None if there is none or it is not listed."""
        return None if self.featured is None else self.find(self.featured)

    @cached_property
    def words(self) -> frozenset[str]:
        """Every folded word of every name and variant (a name with spaces contributes each of its words)."""
        name_words = {part for name in self.names for part in name.split()}
        return frozenset(name_words).union(*(product.variant_words for product in self.products))

    @cached_property
    def longest_name(self) -> int:
        """How many words the longest name has (0 for an empty catalog)."""
        return max((len(name.split()) for name in self.names), default=0)
