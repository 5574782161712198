"""Live-stream comments as order items: ``parse_comment("A01 紅 L +2，B02+1", catalog)``.

The comment is folded first (NFKC, case-folded, ``−`` as ``-``: ``Ａ０１＋１`` is ``a01+1``), then split into
segments at ``,`` ``，`` ``;`` ``；`` ``、`` and line breaks, and each segment into words at whitespace. A
segment is a run of items separated by whitespace; an item never spans two segments::

    item     = NAME WORD* QTY         "A01+2"  "A01 +2"  "A01 x2"  "A01×2"  "洋裝+1"  "A01 紅 L +1"  "A01-1"
             | SIGNED NAME WORD*      "+1 A01"  "+1 A01 紅 L"  "-1 A01"  "+1A01"
             | SIGNED                 "+1"  "-1": the featured product (not an order without one)
    QTY      = SIGNED | TIMES
    SIGNED   = ("+" | "-") N          N = 1..99 without a leading zero; "-" cancels
    TIMES    = ("x" | "*" | "×") N    only after a name: "x2" alone is chat, not an order

NAME is a product's code or alias (several words if the alias has spaces), WORD a word of one of that
product's variants. A quantity may be written against the word before it (``A01+1``, ``A01 紅 L+1``) and a
signed one against the name after it (``+1A01``).

The comment is an order only if every word belongs to an item: an unknown word, a bare name, ``+0``,
``+100``, ``+1.5`` or ``+1+1`` make the whole comment ``[]``, with one exception, **chatter after the order**:
buyers in Taiwanese live streams write ``+1 好想要``, ``+1好想要``, ``A01+1 謝謝``, ``+2！``. When the comment
does not parse, the words at its end (and text glued right after its last quantity) are dropped if they are
chatter, and what is left is parsed again. Chatter: no digit in it, no word of it a code, alias or variant
word, no code or alias inside it (``+1 洋裝好美`` stays ambiguous), not starting with a combining mark (the
keycap ``+1️⃣``). Only a tail is dropped, so the order must come first: ``樓上+1`` / ``我也+1`` ("me too"),
``好想要 +1`` and ``+1 好想要 A01`` stay chatter. Where whitespace-separated items can be read
two ways the first of these wins, left to right: a bare quantity, then a name with the quantity after it,
then a quantity before a name; so a quantity right after a name is that name's (``+1 A01 -1`` is ``+1`` of
the featured product and ``-1`` of A01). Variant words after a name written with the quantity first are
taken as far as they go. Lookups are computed once per :class:`Catalog`; the patterns are compiled once.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import NamedTuple

from tagline_liveshop.domain.catalog import Catalog, CatalogProduct, fold

_SEGMENT_BREAK = re.compile(r"[,;、\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_QUANTITY = re.compile(r"([-+*×x])([1-9][0-9]?)")
_NAME_THEN_QUANTITY = re.compile(r"(.+?)([-+*×x])([1-9][0-9]?)")
_SIGNED_THEN_NAME = re.compile(r"([-+])([1-9][0-9]?)(?![0-9])(.+)")
_DIGITS = frozenset("0123456789")
_WORD = re.compile(r"[^\s,;、\x1c\x1d\x1e\x85\u2028\u2029]+")  # what _SEGMENT_BREAK and whitespace separate
_GLUED_CHATTER = re.compile(
    r"(.*[-+*×x][1-9][0-9]?)(?![0-9])(.+)"
)  # "+1好想要": the last quantity, then text


@dataclass(frozen=True, slots=True)
class ParsedItem:
    code: str  # canonical product code from the catalog (the featured product's code for a bare "+1")
    quantity: int  # non-zero; negative means cancel that many ("-1")
    variant: str | None  # canonical CatalogVariant.name when the variant words matched exactly one variant
    variant_words: tuple[str, ...] = ()  # the folded variant words as typed, for "no such / which variant?"


class _Atom(NamedTuple):
    """One lexical piece of a word: a known word, a quantity, or both (a code such as ``X2``)."""

    word: str | None
    quantity: int | None = None
    signed: bool = False


def _quantity(op: str, digits: str) -> _Atom:
    return _Atom(None, -int(digits) if op == "-" else int(digits), op in "+-")


def _lex(word: str, known: frozenset[str]) -> list[_Atom] | None:
    """The atoms of one whitespace-free word, or None if it has a piece the catalog does not know."""
    standalone = _QUANTITY.fullmatch(word)
    if word in known or standalone:
        if standalone is None:
            return [_Atom(word)]
        atom = _quantity(standalone[1], standalone[2])
        return [atom._replace(word=word if word in known else None)]
    match = _NAME_THEN_QUANTITY.fullmatch(word)
    if match and match[1] in known:
        return [_Atom(match[1]), _quantity(match[2], match[3])]
    match = _SIGNED_THEN_NAME.fullmatch(word)
    if match and match[3] in known:
        return [_quantity(match[1], match[2]), _Atom(match[3])]
    return None


def _names_at(atoms: list[_Atom], i: int, catalog: Catalog) -> list[tuple[CatalogProduct, int]]:
    """The products named by the words starting at ``i``, longest name first, with the index after each."""
    found: list[tuple[CatalogProduct, int]] = []
    names = catalog.names
    word = atoms[i].word if i < len(atoms) else None
    if word is None:
        return found
    if catalog.longest_name > 1:
        end = i
        while end < len(atoms) and end - i < catalog.longest_name and atoms[end].word is not None:
            end += 1
        for stop in range(end, i + 1, -1):
            product = names.get(" ".join(str(atom.word) for atom in atoms[i:stop]))
            if product is not None:
                found.append((product, stop))
    product = names.get(word)
    if product is not None:
        found.append((product, i + 1))
    return found


def _item(product: CatalogProduct, quantity: int, words: list[_Atom]) -> ParsedItem:
    typed = tuple(str(atom.word) for atom in words)
    variant = product.variant_for(typed) if typed else None
    return ParsedItem(product.code, quantity, None if variant is None else variant.name, typed)


def _parse_segment(atoms: list[_Atom], catalog: Catalog) -> list[ParsedItem] | None:
    """The items of one segment, every atom in one, or None. Solved right to left (no recursion)."""
    count = len(atoms)
    parsed: list[tuple[ParsedItem, int] | None] = [
        None
    ] * count  # the item starting at i, where the rest starts
    complete = [False] * count + [True]  # atoms[i:] parse
    featured = catalog.featured_product
    for i in range(count - 1, -1, -1):
        atom = atoms[i]
        choice: tuple[ParsedItem, int] | None = None
        if atom.signed and atom.quantity is not None and featured is not None and complete[i + 1]:
            choice = ParsedItem(featured.code, atom.quantity, None), i + 1
        if choice is None:
            choice = _name_then_quantity(atoms, i, catalog, complete)
        if choice is None and atom.signed and atom.quantity is not None:
            choice = _quantity_then_name(atoms, i, atom.quantity, catalog, complete)
        parsed[i] = choice
        complete[i] = choice is not None
    if not complete[0]:
        return None
    items: list[ParsedItem] = []
    i = 0
    while (choice := parsed[i] if i < count else None) is not None:  # complete[i] holds for every i reached
        item, i = choice
        items.append(item)
    return items


def _name_then_quantity(
    atoms: list[_Atom], i: int, catalog: Catalog, complete: list[bool]
) -> tuple[ParsedItem, int] | None:
    for product, start in _names_at(atoms, i, catalog):
        words = product.variant_words
        for k in range(start, len(atoms)):
            quantity = atoms[k].quantity
            if quantity is not None and complete[k + 1]:
                return _item(product, quantity, atoms[start:k]), k + 1
            if atoms[k].word not in words:
                break
    return None


def _quantity_then_name(
    atoms: list[_Atom], i: int, quantity: int, catalog: Catalog, complete: list[bool]
) -> tuple[ParsedItem, int] | None:
    for product, start in _names_at(atoms, i + 1, catalog):
        words = product.variant_words
        end = start
        while end < len(atoms) and atoms[end].word in words:
            end += 1
        for stop in range(end, start - 1, -1):
            if complete[stop]:
                return _item(product, quantity, atoms[start:stop]), stop
    return None


def parse_comment(text: str, catalog: Catalog) -> list[ParsedItem]:
    """The order items of one live comment, in the order written; ``[]`` if it is not an order."""
    folded = fold(text)
    if _DIGITS.isdisjoint(folded):
        return []
    items = _parse_folded(folded, catalog)
    if items is None:
        head = _before_chatter(folded, catalog)
        items = None if head is None else _parse_folded(head, catalog)
    return items or []


def _parse_folded(folded: str, catalog: Catalog) -> list[ParsedItem] | None:
    """The items of a folded comment, or None if a word belongs to none."""
    known = catalog.words
    items: list[ParsedItem] = []
    for segment in _SEGMENT_BREAK.split(folded):
        atoms: list[_Atom] = []
        for word in segment.split():
            lexed = _lex(word, known)
            if lexed is None:
                return None
            atoms.extend(lexed)
        if atoms:
            segment_items = _parse_segment(atoms, catalog)
            if segment_items is None:
                return None
            items.extend(segment_items)
    return items


def _before_chatter(folded: str, catalog: Catalog) -> str | None:
    """The comment without the chatter at its end (see the module docstring); None if there is none, or if
    nothing but chatter is left."""
    words = list(_WORD.finditer(folded))
    first = len(words)
    while first > 0 and _chatter_word(words[first - 1][0], catalog):
        first -= 1
    cut = words[first].start() if first < len(words) else len(folded)
    if first > 0:
        glued = _GLUED_CHATTER.fullmatch(words[first - 1][0])
        if glued is not None and _chatter_word(glued[2], catalog):
            cut = words[first - 1].start() + glued.end(1)
    tail = folded[cut:]
    if not tail or cut == 0 or unicodedata.category(tail[0]).startswith("M"):
        return None
    spaced = " ".join(tail.split())
    if any(name in spaced for name in catalog.names):
        return None
    return folded[:cut]


def _chatter_word(word: str, catalog: Catalog) -> bool:
    return word not in catalog.words and not any(char.isdigit() for char in word)
