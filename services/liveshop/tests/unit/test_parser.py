import itertools
import unicodedata
from dataclasses import dataclass

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tagline_liveshop.domain.catalog import Catalog, CatalogProduct, CatalogVariant, fold
from tagline_liveshop.domain.parser import ParsedItem, parse_comment

DRESS = CatalogProduct(
    "A01",
    aliases=("洋裝", "Dress"),
    variants=(CatalogVariant(("紅", "L")), CatalogVariant(("紅", "M")), CatalogVariant(("藍", "L"))),
)
SHIRT = CatalogProduct("B02", aliases=("襯衫", "shirt"))
HAT = CatalogProduct("b2", variants=(CatalogVariant(("Navy",)), CatalogVariant(("白",))))
SKIRT = CatalogProduct("C3", aliases=("long skirt",))
CATALOG = Catalog(products=(DRESS, SHIRT, HAT, SKIRT), featured="A01")
NO_FEATURED = Catalog(products=CATALOG.products)

Row = tuple[str, int, str | None, tuple[str, ...]]


def rows(text: str, catalog: Catalog = CATALOG) -> list[Row]:
    return [
        (item.code, item.quantity, item.variant, item.variant_words) for item in parse_comment(text, catalog)
    ]


def one(code: str, quantity: int, variant: str | None = None, *words: str) -> list[Row]:
    return [(code, quantity, variant, words)]


# ----------------------------------------------------------------------------------------------------
# Forms


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+1", one("A01", 1)),
        ("+2", one("A01", 2)),
        ("+99", one("A01", 99)),
        ("A01+2", one("A01", 2)),
        ("A01 +2", one("A01", 2)),
        ("A01   +2", one("A01", 2)),
        ("+1 A01", one("A01", 1)),
        ("+1A01", one("A01", 1)),
        ("+3 B02", one("B02", 3)),
        ("A01 x2", one("A01", 2)),
        ("A01 X2", one("A01", 2)),
        ("A01x2", one("A01", 2)),
        ("A01*2", one("A01", 2)),
        ("A01 *2", one("A01", 2)),
        ("A01×2", one("A01", 2)),
        ("A01 ×2", one("A01", 2)),
        ("b2+1", one("b2", 1)),
        ("b2x2", one("b2", 2)),
        ("+1 b2", one("b2", 1)),
        ("+12b2", one("b2", 12)),
    ],
)
def test_forms(text: str, expected: list[Row]) -> None:
    assert rows(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A01 紅 L +1", one("A01", 1, "紅 L", "紅", "l")),
        ("A01 紅 L+1", one("A01", 1, "紅 L", "紅", "l")),
        ("A01 L 紅 +1", one("A01", 1, "紅 L", "l", "紅")),
        ("A01 紅 l x2", one("A01", 2, "紅 L", "紅", "l")),
        ("A01 藍 L*3", one("A01", 3, "藍 L", "藍", "l")),
        ("+1 A01 紅 L", one("A01", 1, "紅 L", "紅", "l")),
        ("+1 A01 紅 M", one("A01", 1, "紅 M", "紅", "m")),
        ("+1A01 藍 L", one("A01", 1, "藍 L", "藍", "l")),
        ("-1 A01 紅 L", one("A01", -1, "紅 L", "紅", "l")),
        ("A01 紅 L -1", one("A01", -1, "紅 L", "紅", "l")),
        ("洋裝 紅 L+1", one("A01", 1, "紅 L", "紅", "l")),
        ("b2 navy +1", one("b2", 1, "Navy", "navy")),
        ("b2 NAVY+1", one("b2", 1, "Navy", "navy")),
        ("b2 白 +1", one("b2", 1, "白", "白")),
        ("A01 紅 紅 L +1", one("A01", 1, "紅 L", "紅", "紅", "l")),  # compared as a set
    ],
)
def test_variant_words_between_code_and_quantity(text: str, expected: list[Row]) -> None:
    assert rows(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A01 紅 +1", one("A01", 1, None, "紅")),  # two red variants: which one?
        ("A01 L +1", one("A01", 1, None, "l")),
        ("A01 藍 M +1", one("A01", 1, None, "藍", "m")),  # known words, no such variant
        ("A01 紅 L M +1", one("A01", 1, None, "紅", "l", "m")),
        ("+1 A01 紅", one("A01", 1, None, "紅")),
        ("A01+1", one("A01", 1)),  # the product has variants, none given
        ("+1", one("A01", 1)),
    ],
)
def test_variant_words_that_do_not_name_one_variant(text: str, expected: list[Row]) -> None:
    assert rows(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-1", one("A01", -1)),
        ("-2", one("A01", -2)),
        ("A01-1", one("A01", -1)),
        ("A01 -1", one("A01", -1)),
        ("-1 A01", one("A01", -1)),
        ("-1A01", one("A01", -1)),
        ("A01－1", one("A01", -1)),
        ("A01 −1", one("A01", -1)),
        ("－１", one("A01", -1)),
        ("−1", one("A01", -1)),
        ("洋裝-1", one("A01", -1)),
        ("b2-1", one("b2", -1)),
    ],
)
def test_cancel(text: str, expected: list[Row]) -> None:
    assert rows(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("＋１", one("A01", 1)),
        ("＋１２", one("A01", 12)),
        ("Ａ０１＋２", one("A01", 2)),
        ("ａ０１　＋２", one("A01", 2)),
        ("Ａ０１ｘ２", one("A01", 2)),
        ("Ａ０１Ｘ２", one("A01", 2)),
        ("Ａ０１＊２", one("A01", 2)),
        ("＋１　Ｂ０２", one("B02", 1)),
        ("Ｂ２＋１", one("b2", 1)),
        ("Ａ０１ 紅 Ｌ ＋１", one("A01", 1, "紅 L", "紅", "l")),
        ("ｂ２ ｎａｖｙ ＋１", one("b2", 1, "Navy", "navy")),
    ],
)
def test_full_width(text: str, expected: list[Row]) -> None:
    assert rows(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("洋裝+1", one("A01", 1)),
        ("洋裝 +1", one("A01", 1)),
        ("+1洋裝", one("A01", 1)),
        ("+1 洋裝", one("A01", 1)),
        ("洋裝x2", one("A01", 2)),
        ("洋裝×2", one("A01", 2)),
        ("dress+1", one("A01", 1)),
        ("DRESS x2", one("A01", 2)),
        ("Dress-1", one("A01", -1)),
        ("襯衫+2", one("B02", 2)),
        ("SHIRT+1", one("B02", 1)),
        ("Ｓｈｉｒｔ＋１", one("B02", 1)),
        ("long skirt+1", one("C3", 1)),
        ("LONG   SKIRT x2", one("C3", 2)),
        ("+1 long skirt", one("C3", 1)),
        ("+1long skirt", one("C3", 1)),
    ],
)
def test_aliases(text: str, expected: list[Row]) -> None:
    assert rows(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a01+1", one("A01", 1)),
        ("A01+1", one("A01", 1)),
        ("B2+1", one("b2", 1)),
        ("c3 X3", one("C3", 3)),
    ],
)
def test_codes_are_case_insensitive_and_come_back_canonical(text: str, expected: list[Row]) -> None:
    assert rows(text) == expected


A01_1 = ("A01", 1, None, ())
B02_1 = ("B02", 1, None, ())
B02_2 = ("B02", 2, None, ())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A01+1 B02+2", [A01_1, B02_2]),
        ("A01+1，B02+1", [A01_1, B02_1]),
        ("A01+1,B02+1", [A01_1, B02_1]),
        ("A01+1, B02+1", [A01_1, B02_1]),
        ("A01+1、B02 x2", [A01_1, B02_2]),
        ("A01+1;B02+1", [A01_1, B02_1]),
        ("A01+1；B02+1", [A01_1, B02_1]),
        ("A01+1\nB02+1", [A01_1, B02_1]),
        ("A01+1\r\nB02+1", [A01_1, B02_1]),
        ("A01+1\n\nB02+1\n", [A01_1, B02_1]),
        ("A01 +1 B02 +2", [A01_1, B02_2]),
        ("+1 A01 B02+2", [A01_1, B02_2]),
        ("+1 A01, +2 B02", [A01_1, B02_2]),
        ("A01+1 +2 B02", [A01_1, B02_2]),
        ("+1 B02 +1", [A01_1, B02_1]),  # a quantity right after a name is that name's
        ("+1 A01 -1", [A01_1, ("A01", -1, None, ())]),
        ("A01 紅 L+1 B02 x2", [("A01", 1, "紅 L", ("紅", "l")), B02_2]),
        ("+1 A01 紅 L B02+2", [("A01", 1, "紅 L", ("紅", "l")), B02_2]),
        ("+1 +2", [A01_1, ("A01", 2, None, ())]),
        ("+1，-1", [A01_1, ("A01", -1, None, ())]),
        ("A01+1 A01+1", [A01_1, A01_1]),  # repeated items stay separate; the caller merges
        ("  A01+1  ", [A01_1]),
        (",A01+1,", [A01_1]),
        ("，、；\nA01+1\n；", [A01_1]),
        ("A01+1 ,, ;; B02+1", [A01_1, B02_1]),
    ],
)
def test_several_items(text: str, expected: list[Row]) -> None:
    assert rows(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "，",
        "好美+1",
        "A01",
        "A01 紅 L",
        "A01 好看嗎",
        "好看嗎 A01+1",
        "hello",
        "1+1=2",
        "1+1",
        "+1+1",
        "A01+1+1",
        "Z99+1",
        "A011+1",
        "A0+1",
        "+0",
        "A01+0",
        "+100",
        "A01 x100",
        "+1.5",
        "A01+1.5",
        "+01",
        "x2",
        "*2",
        "×2",
        "A01 x-1",
        "A01 + 1",
        "A01 x 2",
        "A01++1",
        "A01 紅 XL +1",  # XL is no word of A01's variants
        "B02 紅 +1",  # B02 has no variants
        "b2 紅 +1",  # 紅 is a word of another product
        "+1 紅",  # variant words need a name
        "紅 L +1",
        "A01，+1 紅",
        "A01，+1",  # an item does not span a separator: "A01" alone is not an item
        "+1A01+1",
        "A01 +1 紅",  # words after a quantity that follows the name
        "A01 B02 +1",
        "洋裝襯衫+1",
        "𝟏+𝟏=𝟐",
        "+1️⃣",
        "long+1",
        "skirt+1",
        "+1 skirt long",
    ],
)
def test_not_an_order(text: str) -> None:
    assert parse_comment(text, CATALOG) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+1 好想要", one("A01", 1)),
        ("+1好想要", one("A01", 1)),  # glued to the quantity
        ("+2 謝謝主播", one("A01", 2)),
        ("+1，好想要！", one("A01", 1)),
        ("＋１　好想要", one("A01", 1)),
        ("+1 ❤️❤️", one("A01", 1)),
        ("+1!", one("A01", 1)),
        ("+1 i want it", one("A01", 1)),
        ("-1 不要了", one("A01", -1)),
        ("+1 好美", one("A01", 1)),
        ("+1 A01 好想要", one("A01", 1)),
        ("+1A01 好想要", one("A01", 1)),
        ("A01+1 好看嗎", one("A01", 1)),
        ("A01+1好看", one("A01", 1)),
        ("A01 +1!", one("A01", 1)),
        ("A01+1 ❤️", one("A01", 1)),
        ("A01 x2 謝謝", one("A01", 2)),
        ("A01 紅 L +1 好想要", one("A01", 1, "紅 L", "紅", "l")),
        ("+1 A01 紅 L 好想要", one("A01", 1, "紅 L", "紅", "l")),
        ("+1 紅色好看", one("A01", 1)),  # not a variant word: the featured product, "which variant?"
        ("+1 long skirt please", one("C3", 1)),
        ("A01+1, B02+2 謝謝", [A01_1, B02_2]),
        ("+1 +1 好", [A01_1, A01_1]),
        ("+1 A01 +", one("A01", 1)),
    ],
)
def test_chatter_after_an_order(text: str, expected: list[Row]) -> None:
    assert rows(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "我也+1",  # "me too": the order must come first
        "樓上+1",
        "好想要 +1",
        "好想要+1",
        "+1 好想要 +1",  # chatter in the middle
        "+1 好想要 A01",
        "+1 好想要，B02+1",
        "+1 洋裝好美",  # a product name inside the chatter: which product?
        "+1 dress好看",
        "+1 紅",  # a variant word, not chatter
        "+1 好想要 L",
        "+1 好想要 2件",  # a number in the chatter
        "+1 好想要２",
        "+1️⃣",  # the keycap emoji: the combining marks belong to the digit
        "+1.5 好想要",
        "+0 好想要",
        "+100 好想要",
        "A01 好想要",
        "+1+1 好",
    ],
)
def test_chatter_that_is_not_after_an_order(text: str) -> None:
    assert parse_comment(text, CATALOG) == []


def test_chatter_after_a_bare_quantity_needs_a_featured_product() -> None:
    assert parse_comment("+1 好想要", NO_FEATURED) == []
    assert rows("A01+1 好想要", NO_FEATURED) == [A01_1]


@pytest.mark.parametrize("text", ["+1", "-1", "+2 紅", "+1，+2"])
def test_bare_quantity_without_a_featured_product_is_not_an_order(text: str) -> None:
    assert parse_comment(text, NO_FEATURED) == []
    assert parse_comment(text, Catalog(products=CATALOG.products, featured="Z9")) == []


def test_bare_quantity_with_no_featured_product_leaves_named_items_alone() -> None:
    assert rows("A01+1", NO_FEATURED) == [A01_1]
    assert parse_comment("A01+1 +1", NO_FEATURED) == []


def test_featured_product_is_found_by_folded_code_or_alias() -> None:
    assert rows("+1", Catalog(products=CATALOG.products, featured="ｂ２")) == one("b2", 1)
    assert rows("+1", Catalog(products=CATALOG.products, featured="襯衫")) == one("B02", 1)


def test_a_code_that_looks_like_a_quantity() -> None:
    catalog = Catalog(products=(DRESS, CatalogProduct("X2")), featured="A01")
    assert rows("X2+1", catalog) == one("X2", 1)
    assert rows("x2 x3", catalog) == one("X2", 3)
    assert rows("+1 X2", catalog) == one("X2", 1)
    assert rows("A01 x2", catalog) == one("A01", 2)
    assert parse_comment("x2", catalog) == []


def test_a_code_wins_over_another_products_alias() -> None:
    catalog = Catalog(products=(CatalogProduct("A01", aliases=("B02",)), CatalogProduct("B02")))
    assert rows("B02+1", catalog) == one("B02", 1)
    assert catalog.find("ｂ０２") == catalog.products[1]


def test_variants_configured_twice_are_ambiguous() -> None:
    product = CatalogProduct("A01", variants=(CatalogVariant(("紅", "L")), CatalogVariant(("L", "紅"))))
    assert rows("A01 紅 L +1", Catalog(products=(product,))) == one("A01", 1, None, "紅", "l")


def test_parsed_item_defaults() -> None:
    assert ParsedItem("A01", 1, None) == ParsedItem("A01", 1, None, ())


def test_a_long_comment_of_many_items() -> None:
    text = " ".join(["+1", "A01+2", "+3 B02", "b2 navy x4"] * 300)  # ~4,400 characters, 1,200 items
    items = parse_comment(text, CATALOG)
    assert len(items) == 1_200
    assert items[:4] == [
        ParsedItem("A01", 1, None),
        ParsedItem("A01", 2, None),
        ParsedItem("B02", 3, None),
        ParsedItem("b2", 4, "Navy", ("navy",)),
    ]


def test_a_catalog_is_indexed_once() -> None:
    catalog = Catalog(products=(DRESS,), featured="A01")
    parse_comment("A01+1", catalog)
    assert catalog.names is catalog.names
    assert catalog == Catalog(products=(DRESS,), featured="A01")
    assert hash(catalog) == hash(Catalog(products=(DRESS,), featured="A01"))


# ----------------------------------------------------------------------------------------------------
# Properties


@dataclass(frozen=True)
class Rendered:
    item: ParsedItem
    text: str
    form: str  # "bare", "suffix" (name then quantity) or "prefix" (quantity then name)


def full_width(char: str) -> str:
    return chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else "\u3000" if char == " " else char


@st.composite
def disguised(draw: st.DrawFn, text: str) -> str:
    """``text`` with some ASCII characters upper-cased, lower-cased or full-width."""
    styles = draw(st.lists(st.sampled_from("=ulw"), min_size=len(text), max_size=len(text)))
    out = []
    for char, style in zip(text, styles, strict=True):
        out.append(
            char.upper()
            if style == "u"
            else char.lower()
            if style == "l"
            else full_width(char)
            if style == "w"
            else char
        )
    return "".join(out)


PLUS = st.sampled_from(["+", "＋"])
MINUS = st.sampled_from(["-", "－", "−"])
TIMES = st.sampled_from(["x", "X", "*", "×", "ｘ", "＊"])
GAP = st.sampled_from(["", " ", "  ", "\u3000", "\t"])
HARD = ["，", ",", "、", ";", "；", "\n", "\r\n", " , ", "，\u3000", "\n\n"]
SOFT = [" ", "  ", "\u3000", " \t "]
EDGE = st.sampled_from(["", " ", "\n", "，", " ; ", "\u3000"])


@st.composite
def rendered_items(draw: st.DrawFn) -> Rendered:
    form = draw(st.sampled_from(["bare", "suffix", "prefix"]))
    number = draw(st.integers(1, 99))
    cancel = draw(st.booleans())
    quantity = -number if cancel else number
    if form == "bare":
        op = draw(MINUS if cancel else PLUS)
        return Rendered(ParsedItem("A01", quantity, None), draw(disguised(f"{op}{number}")), form)
    product = draw(st.sampled_from(CATALOG.products))
    name = draw(disguised(draw(st.sampled_from((product.code, *product.aliases)))))
    all_words = sorted({word for variant in product.variants for word in variant.words})
    words = draw(st.lists(st.sampled_from(all_words), unique=True, max_size=3)) if all_words else []
    typed = [draw(disguised(word)) for word in words]
    variant = product.variant_for(words)
    item = ParsedItem(
        product.code, quantity, None if variant is None else variant.name, tuple(fold(w) for w in words)
    )
    head = " ".join([name, *typed])
    if form == "suffix":
        op = draw(MINUS if cancel else st.one_of(PLUS, TIMES))
        return Rendered(item, f"{head}{draw(GAP)}{draw(disguised(f'{op}{number}'))}", form)
    op = draw(MINUS if cancel else PLUS)
    return Rendered(item, f"{draw(disguised(f'{op}{number}'))}{draw(GAP)}{head}", form)


@st.composite
def comments(draw: st.DrawFn) -> tuple[list[Rendered], str]:
    """Items and a comment that orders exactly them."""
    parts = draw(st.lists(rendered_items(), min_size=1, max_size=6))
    text = draw(EDGE) + parts[0].text
    for before, after in itertools.pairwise(parts):
        # "+1 A01 +2" reads as "+1" of the featured product and "A01 +2": such neighbours need a separator
        needs_separator = before.form == "prefix" and after.form != "suffix"
        text += draw(st.sampled_from(HARD if needs_separator else HARD + SOFT)) + after.text
    return parts, text + draw(EDGE)


@given(comments())
def test_a_rendered_comment_parses_to_its_items(comment: tuple[list[Rendered], str]) -> None:
    parts, text = comment
    assert parse_comment(text, CATALOG) == [part.item for part in parts]


@given(comments())
def test_without_a_featured_product_a_comment_with_a_bare_quantity_is_not_an_order(
    comment: tuple[list[Rendered], str],
) -> None:
    parts, text = comment
    bare = any(part.form == "bare" for part in parts)
    assert parse_comment(text, NO_FEATURED) == ([] if bare else [part.item for part in parts])


UNKNOWN_WORDS = st.sampled_from(
    ["好美", "hello", "好看嗎", "?", "❤️", "Z9", "A0", "+0", "+100", "1", "x", "+", "紅色"]
)
UNKNOWN_LETTERS = st.text(st.characters(categories=["L"]), min_size=1, max_size=5).filter(
    lambda word: all(char.isalpha() for char in fold(word)) and fold(word) not in CATALOG.words
)


@given(comments(), st.one_of(UNKNOWN_WORDS, UNKNOWN_LETTERS), st.integers(0, 1_000), st.sampled_from(SOFT))
def test_an_unknown_word_before_an_item_makes_it_not_an_order(
    comment: tuple[list[Rendered], str], word: str, where: int, space: str
) -> None:
    parts, text = comment
    last_item_ends = text.rfind(parts[-1].text) + len(parts[-1].text)
    # at the start, or at any whitespace or separator with an item after it (after the last: chatter)
    places = [0, *(i for i, char in enumerate(text[:last_item_ends]) if char.isspace() or char in ",，、;；")]
    at = places[where % len(places)]
    assert parse_comment(text[:at] + space + word + space + text[at:], CATALOG) == []


CHATTER = st.sampled_from(["好想要", "謝謝主播", "❤️", "😍😍", "!!", "～", "好美", "please", "感謝", "要要要"])


@given(comments(), st.lists(CHATTER, min_size=1, max_size=4), st.sampled_from(["", *SOFT, *HARD]))
def test_an_order_followed_by_chatter_is_the_order(
    comment: tuple[list[Rendered], str], chatter: list[str], gap: str
) -> None:
    parts, text = comment
    if gap == "" and parts[-1].form == "prefix" and text.endswith(parts[-1].text):
        gap = " "  # chatter is glued only to a quantity ("+1好想要"), not to a name ("+1 A01好想要")
    assert parse_comment(text + gap + " ".join(chatter), CATALOG) == [part.item for part in parts]


@given(comments())
def test_a_rendered_comment_is_invariant_under_nfkc_and_casefold(comment: tuple[list[Rendered], str]) -> None:
    items, text = [part.item for part in comment[0]], comment[1]
    assert parse_comment(unicodedata.normalize("NFKC", text), CATALOG) == items
    assert parse_comment(text.casefold(), CATALOG) == items
    assert parse_comment(text.upper(), CATALOG) == items


COMMENT_CHARS = st.sampled_from(
    [
        *"+-*x×＋－−ｘX＊0123456789０１９ ,，、;；\n\u3000.=!?aAbBcCl",
        *(
            "A01",
            "a01",
            "B02",
            "b2",
            "洋裝",
            "襯衫",
            "dress",
            "long",
            "skirt",
            "紅",
            "藍",
            "L",
            "M",
            "navy",
            "白",
        ),
        "好美",
    ]
)
COMMENT_LIKE = st.lists(COMMENT_CHARS, max_size=20).map("".join)


@st.composite
def mutated_comments(draw: st.DrawFn) -> str:
    """A rendered comment with a few characters deleted, replaced or inserted: sometimes still an order."""
    text = draw(comments())[1]
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 1))
        text = text[:at] + draw(st.one_of(st.just(""), COMMENT_CHARS, st.characters())) + text[at + cut :]
    return text


ANY_TEXT = st.one_of(st.text(), COMMENT_LIKE, mutated_comments())


@given(ANY_TEXT)
def test_any_text_parses_to_items_of_the_catalog(text: str) -> None:
    for item in parse_comment(text, CATALOG):
        product = CATALOG.find(item.code)
        assert product is not None
        assert product.code == item.code
        assert 1 <= abs(item.quantity) <= 99
        assert item.variant is None or item.variant in {variant.name for variant in product.variants}
        assert set(item.variant_words) <= product.variant_words


@given(ANY_TEXT)
def test_parsing_is_invariant_under_nfkc_and_casefold(text: str) -> None:
    parsed = parse_comment(text, CATALOG)
    assert parse_comment(unicodedata.normalize("NFKC", text), CATALOG) == parsed
    assert parse_comment(text.casefold(), CATALOG) == parsed


@given(st.one_of(st.text(st.characters(exclude_categories=["Nd", "No"])), COMMENT_LIKE))
def test_text_without_a_digit_is_not_an_order(text: str) -> None:
    assume(not any(char.isdigit() for char in unicodedata.normalize("NFKC", text)))
    assert parse_comment(text, CATALOG) == []
