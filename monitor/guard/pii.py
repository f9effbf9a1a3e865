"""Personal data in text: emails, phone numbers, payment cards, IBANs, US SSNs, IP addresses.

Each detector is a precompiled pattern plus a validator, because a pattern alone cannot tell
a card from an order number: cards must pass Luhn, IBANs their country length and mod-97,
SSNs the never-issued ranges, US phones the NANP shape, and a bare run of digits is never a
phone. Patterns start with a look-behind so that a match can only begin at the start of a
token, and every repetition is bounded or possessive: the cost stays linear on hostile input
(100k repeated digits, dots or `@`s). Secrets live in `monitor.guard.credentials`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Final

from monitor.guard.checks import PiiType
from monitor.guard.checksums import IBAN_LENGTHS, iban_valid, luhn_valid, ssn_valid
from monitor.guard.credentials import find_secrets
from monitor.guard.redaction import Hit

REPLACEMENTS: Final = {
    PiiType.EMAIL: "[EMAIL]",
    PiiType.PHONE: "[PHONE]",
    PiiType.CARD: "[CARD]",
    PiiType.IBAN: "[IBAN]",
    PiiType.SSN: "[SSN]",
    PiiType.IP: "[IP]",
    PiiType.SECRET: "[SECRET]",
}

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL: Final = re.compile(
    rf"(?<![\w.%+-])[\w.%+-]{{1,64}}@{_LABEL}(?:\.{_LABEL})*\.[A-Za-z]{{2,24}}"
    r"(?![\w-]|\.[A-Za-z0-9])"
)
_PHONE_INTL: Final = re.compile(r"(?<![\w+])\+[0-9][0-9 ().-]{6,22}[0-9](?!\w)")
_PHONE_US: Final = re.compile(
    r"(?<![\w+.-])(?:1[ .-])?(?:\(([2-9][0-9]{2})\) ?|([2-9][0-9]{2})[ .-])"
    r"[2-9][0-9]{2}[ .-][0-9]{4}(?![\w]|[.-][0-9])"
)
_CARD: Final = re.compile(r"(?<![\w.-])[0-9](?:[ -]?[0-9]){12,18}(?![\w]|[.-][0-9])")
_IBAN: Final = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?:[ -]?[A-Za-z0-9]){10,31}")
_SSN: Final = re.compile(r"(?<![\w.-])([0-9]{3})([- ])([0-9]{2})\2([0-9]{4})(?![\w]|[.-][0-9])")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4: Final = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?!\w|\.[0-9])")
_IPV6: Final = re.compile(
    r"(?<![\w:])(?=[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:)[0-9A-Fa-f:]{3,39}+(?![\w:])"
)


def _hit(kind: PiiType, start: int, end: int, detail: str) -> Hit:
    return Hit(f"pii.{kind.value}", "pii", start, end, REPLACEMENTS[kind], detail=detail)


def find_emails(text: str) -> list[Hit]:
    if "@" not in text:
        return []
    return [_hit(PiiType.EMAIL, m.start(), m.end(), "email address") for m in _EMAIL.finditer(text)]


def find_phones(text: str) -> list[Hit]:
    hits = []
    if "+" in text:
        for m in _PHONE_INTL.finditer(text):
            end = _trim_phone(m.group())
            if end:
                hits.append(_hit(PiiType.PHONE, m.start(), m.start() + end, "phone number"))
    hits += [
        _hit(PiiType.PHONE, m.start(), m.end(), "US phone number") for m in _PHONE_US.finditer(text)
    ]
    return hits


def _trim_phone(candidate: str) -> int:
    """The length of the phone number at the start of `candidate` (an E.164 number has 8 to
    15 digits), dropping trailing space-separated groups that make it too long; 0 if none."""
    while True:
        digits = sum(c.isdigit() for c in candidate)
        if digits <= 15:
            break
        cut = candidate.rfind(" ")
        if cut <= 1:
            return 0
        candidate = candidate[:cut].rstrip(" ().-")
    if digits < 8 or candidate.count("(") != candidate.count(")") or ".." in candidate:
        return 0
    return len(candidate)


def find_cards(text: str) -> list[Hit]:
    hits = []
    for m in _CARD.finditer(text):
        raw = m.group()
        digits = raw.replace(" ", "").replace("-", "")
        groups = re.split(r"[ -]", raw)
        # printed cards group as 4-4-4-4, 4-6-5, 4-6-4 or 4-4-4-4-3: no short tail group
        grouped = len(groups) == 1 or (
            all(4 <= len(g) <= 6 for g in groups[:-1]) and 3 <= len(groups[-1]) <= 6
        )
        if grouped and digits[0] in "23456" and len(set(digits)) > 1 and luhn_valid(digits):
            hits.append(_hit(PiiType.CARD, m.start(), m.end(), "payment card (Luhn valid)"))
    return hits


def find_ibans(text: str) -> list[Hit]:
    hits = []
    position = 0
    while (m := _IBAN.search(text, position)) is not None:
        position = m.start() + 1
        raw = m.group()
        length = IBAN_LENGTHS.get(raw[:2].upper())
        if length is None:
            continue
        end = _alnum_prefix_end(raw, length)  # the pattern is greedy; the country says where
        after = m.start() + end  # the IBAN ends, and it must end at a token boundary
        if end and not (after < len(text) and text[after].isalnum()):
            compact = "".join(c for c in raw[:end] if c.isalnum()).upper()
            if iban_valid(compact):
                hits.append(_hit(PiiType.IBAN, m.start(), after, "IBAN (mod-97 valid)"))
                position = after
    return hits


def _alnum_prefix_end(raw: str, count: int) -> int:
    seen = 0
    for index, char in enumerate(raw):
        if char.isalnum():
            seen += 1
            if seen == count:
                return index + 1
    return 0


def find_ssns(text: str) -> list[Hit]:
    return [
        _hit(PiiType.SSN, m.start(), m.end(), "US social security number")
        for m in _SSN.finditer(text)
        if ssn_valid(m.group(1), m.group(3), m.group(4))
    ]


def find_ips(text: str) -> list[Hit]:
    hits = [_hit(PiiType.IP, m.start(), m.end(), "IPv4 address") for m in _IPV4.finditer(text)]
    if "::" in text or text.count(":") >= 7:
        hits += [
            _hit(PiiType.IP, m.start(), m.end(), "IPv6 address")
            for m in _IPV6.finditer(text)
            if _plausible_ipv6(m.group())
        ]
    return hits


def _plausible_ipv6(candidate: str) -> bool:
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    groups = [g for g in candidate.split(":") if g]
    # "a::b" is a valid address, and also C++; ask for some substance
    return len(groups) >= 2 and (any(c.isdigit() for c in candidate) or max(map(len, groups)) >= 3)


DETECTORS: Final[dict[PiiType, Callable[[str], list[Hit]]]] = {
    PiiType.EMAIL: find_emails,
    PiiType.PHONE: find_phones,
    PiiType.CARD: find_cards,
    PiiType.IBAN: find_ibans,
    PiiType.SSN: find_ssns,
    PiiType.IP: find_ips,
    PiiType.SECRET: find_secrets,
}


def find_pii(text: str, kinds: tuple[PiiType, ...] = tuple(PiiType)) -> list[Hit]:
    """Every item of the given kinds in `text`. Where two overlap (a phone inside a card
    number, a US phone inside an international one) the one that starts first and is longer
    is kept, so one thing gives one finding."""
    hits: list[Hit] = []
    for kind in kinds:
        hits += DETECTORS[kind](text)
    if len(hits) < 2:
        return hits
    hits.sort(key=lambda h: (h.start, -h.end))
    kept = [hits[0]]
    for hit in hits[1:]:
        if hit.start >= kept[-1].end:
            kept.append(hit)
    return kept
