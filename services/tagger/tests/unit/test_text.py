import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagline_tagger.domain.text import normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ＡＢＣ１２３", "abc123"),
        ("＃ＳＡＬＥ", "#sale"),
        ("ｓａｌｅ\u3000ｎｏｗ", "sale now"),
        ("Hello WORLD", "hello world"),
        ("  a \t\n  b  ", "a b"),
        ("我想買\u3000優惠券", "我想買 優惠券"),
        ("ＶＩＰ會員　優惠", "vip會員 優惠"),
        ("Straße", "strasse"),
        ("ｶﾀｶﾅ", "カタカナ"),
        ("", ""),
        (" \u3000\t", ""),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_traditional_chinese_is_left_alone() -> None:
    text = "謝謝您的購買！下次見。"
    assert normalize(text) == "謝謝您的購買!下次見。"  # only the full-width "！" is folded
    assert normalize("繁體中文測試") == "繁體中文測試"


def test_ascii_and_general_paths_agree() -> None:
    # ASCII takes a fast path; adding one non-ASCII character must not change how the rest is treated.
    assert normalize("  Mixed\tCASE  text ") + " 中" == normalize("  Mixed\tCASE  text 中 ")


@given(st.text())
def test_idempotent(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once


@given(st.text())
def test_no_edge_or_double_whitespace(text: str) -> None:
    out = normalize(text)
    assert out == out.strip()
    assert "  " not in out
    assert all(c == " " or not c.isspace() for c in out)


@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E)))
def test_full_width_ascii_folds_to_lower_ascii(text: str) -> None:
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in text)
    assert normalize(full_width) == text.lower()
