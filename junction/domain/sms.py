"""How an SMS text travels: its encoding, and how many segments (billed messages) it takes.

Rules kept here (3GPP TS 23.038, "GSM 03.38", and TS 23.040 for concatenation):
- a text made only of the GSM-7 basic character set, plus its extension table, is sent
  GSM-7; anything else (one "ê", one emoji) sends the whole text UCS-2;
- a GSM-7 character of the extension table (``€ [ ] { } \\ ^ ~ |`` and form feed) is an
  escape plus a character: it counts two septets;
- in UCS-2 a character outside the Basic Multilingual Plane (most emoji) is a surrogate
  pair: it counts two code units;
- one segment carries 160 septets or 70 UCS-2 units; a longer text is split into segments of
  153 septets or 67 units (the rest is the concatenation header);
- a character is never split across two segments: an escaped GSM-7 character or a surrogate
  pair that does not fit at the end of a segment starts the next one, as phones and carriers
  do. So a long text may need one segment more than its length divided by 153 (or 67).

The count is of the text as given. A provider may rewrite some characters first (Twilio's
Smart Encoding turns curly quotes into straight ones) and then bill fewer segments.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# The basic set, in table order (0x00-0x7F); 0x1B is the escape to the extension table.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"  # 0x1B, the escape, is not a character of its own
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# Characters reached through the escape: each costs two septets.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

SINGLE_SEGMENT = {"GSM-7": 160, "UCS-2": 70}
CONCATENATED_SEGMENT = {"GSM-7": 153, "UCS-2": 67}


class Encoding(StrEnum):
    GSM7 = "GSM-7"
    UCS2 = "UCS-2"


@dataclass(frozen=True, slots=True)
class Segmentation:
    encoding: Encoding
    units: int  # septets for GSM-7, 16-bit code units for UCS-2
    segments: int


def encoding_of(text: str) -> Encoding:
    """GSM-7 when every character is in its basic set or extension table, else UCS-2."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text):
        return Encoding.GSM7
    return Encoding.UCS2


def _cost(character: str, encoding: Encoding) -> int:
    if encoding is Encoding.GSM7:
        return 2 if character in GSM7_EXTENSION else 1
    return 2 if ord(character) > 0xFFFF else 1


def segment(text: str) -> Segmentation:
    """The encoding, length in units, and segments of an SMS text (an empty one still takes
    one segment)."""
    encoding = encoding_of(text)
    costs = [_cost(c, encoding) for c in text]
    units = sum(costs)
    if units <= SINGLE_SEGMENT[encoding]:
        return Segmentation(encoding, units, 1)
    capacity = CONCATENATED_SEGMENT[encoding]
    segments, used = 1, 0
    for cost in costs:
        if used + cost > capacity:  # this character starts the next segment whole
            segments, used = segments + 1, 0
        used += cost
    return Segmentation(encoding, units, segments)
