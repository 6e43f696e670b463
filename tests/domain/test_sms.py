"""SMS encoding and segments, against the GSM 03.38 tables and the concatenation limits."""

from __future__ import annotations

import pytest

from junction.domain.sms import Encoding, encoding_of, segment


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Your code is 1234", Encoding.GSM7),
        ("Café à Paris, Ça va? ¿Qué tal? Ñandù, Ærø, ß, Ü", Encoding.GSM7),  # all in the basic set
        ("Prix: 5€ [promo] {x} ~ | ^ \\", Encoding.GSM7),  # the extension table
        ("ΔΦΓΛΩΠΨΣΘΞ", Encoding.GSM7),  # Greek capitals of the basic set
        ("Fête", Encoding.UCS2),  # ê is not in GSM 03.38
        ("á", Encoding.UCS2),  # à is, á is not
        ("Ç is in, ç is not", Encoding.UCS2),
        ("“curly quotes”", Encoding.UCS2),
        ("ok 👍", Encoding.UCS2),
        ("", Encoding.GSM7),
    ],
)
def test_one_character_outside_gsm_7_sends_the_whole_text_in_ucs_2(text, encoding) -> None:
    assert encoding_of(text) == encoding


@pytest.mark.parametrize(
    ("text", "units", "segments"),
    [
        ("a" * 160, 160, 1),
        ("a" * 161, 161, 2),
        ("a" * 153 * 2, 306, 2),
        ("a" * (153 * 2 + 1), 307, 3),
        ("a" * 1530, 1530, 10),
        ("", 0, 1),
    ],
)
def test_gsm_7_segments_hold_160_alone_and_153_concatenated(text, units, segments) -> None:
    measured = segment(text)
    assert (measured.encoding, measured.units, measured.segments) == (
        Encoding.GSM7,
        units,
        segments,
    )


@pytest.mark.parametrize(
    ("text", "units", "segments"),
    [
        ("ê" * 70, 70, 1),
        ("ê" * 71, 71, 2),
        ("ê" * 67 * 2, 134, 2),
        ("ê" * (67 * 2 + 1), 135, 3),
    ],
)
def test_ucs_2_segments_hold_70_alone_and_67_concatenated(text, units, segments) -> None:
    measured = segment(text)
    assert (measured.encoding, measured.units, measured.segments) == (
        Encoding.UCS2,
        units,
        segments,
    )


def test_extension_characters_count_two_septets() -> None:
    assert segment("€" * 80) == segment("a" * 160)  # 160 septets: still one segment
    assert (segment("€" * 81).units, segment("€" * 81).segments) == (162, 2)
    assert segment("[1]").units == 5


def test_an_escaped_character_is_never_split_across_segments() -> None:
    # 152 + 2 + 152 = 306 septets would fill two segments exactly, but the euro does not fit
    # in the first one's last septet: it opens the second, and the text needs a third.
    text = "a" * 152 + "€" + "a" * 152
    assert (segment(text).units, segment(text).segments) == (306, 3)
    assert segment("a" * 151 + "€" + "a" * 153).segments == 2  # the euro fits: 153 + 153


def test_emoji_outside_the_basic_plane_take_two_ucs_2_units() -> None:
    assert (segment("😀" * 35).units, segment("😀" * 35).segments) == (70, 1)
    assert (segment("😀" * 36).units, segment("😀" * 36).segments) == (72, 2)
    # 66 units and one emoji do not fit in 67: the pair opens the next segment
    assert segment("ê" * 66 + "😀" + "ê" * 66).segments == 3
