"""Personal data in text: emails, phone numbers, payment cards, IBANs, US SSNs, IP addresses.

Each detector is a precompiled pattern plus a validator, because a pattern alone cannot tell
a card from an order number: cards must pass Luhn, IBANs their country length and mod-97,
SSNs the never-issued ranges, US phones the NANP shape, and a bare run of digits is never a
phone. Secrets live in `monitor.guard.detectors.credentials`.

Speed and safety come from anchoring. Patterns are only tried (`match`, never `search`)
where they can start: at an `@` for emails, a `+` for international phones, and otherwise at
the start of a digit run, found in one pass shared by cards, SSNs, US phones, IPv4 and IBANs
(two capitals before the run). Token boundaries are checked in code, and every repetition is
bounded or possessive, so hostile input (100k digits, dots or `@`s) costs linear time.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Final

from monitor.guard.checks import PiiType
from monitor.guard.detectors.checksums import IBAN_LENGTHS, iban_valid, luhn_valid, ssn_valid
from monitor.guard.detectors.credentials import find_secrets
from monitor.guard.detectors.redaction import Hit

REPLACEMENTS: Final = {
    PiiType.EMAIL: "[EMAIL]",
    PiiType.PHONE: "[PHONE]",
    PiiType.CARD: "[CARD]",
    PiiType.IBAN: "[IBAN]",
    PiiType.SSN: "[SSN]",
    PiiType.IP: "[IP]",
    PiiType.SECRET: "[SECRET]",
}

_LOCAL_CHARS: Final = frozenset(".%+-_")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL_DOMAIN: Final = re.compile(
    rf"{_LABEL}(?:\.{_LABEL}){{0,16}}\.[A-Za-z]{{2,24}}(?![\w-]|\.[A-Za-z0-9])"
)
_PHONE_INTL: Final = re.compile(r"\+[0-9][0-9 ().-]{6,22}[0-9](?!\w)")
_PHONE_US: Final = re.compile(
    r"(?:1[ .-])?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}"
    r"(?!\w|[.-][0-9])"
)
# National numbers behind a trunk prefix 0 (UK, Germany, France and most of Europe): an area
# code of 3-5 digits (in parentheses, or followed by a space, `/`, `.` or `-`) and one to
# three groups of 3-8 digits with one kind of separator; or French-style five pairs.
_PHONE_NATIONAL: Final = re.compile(
    r"(?:\(0[1-9][0-9]{1,3}+\) ?|0[1-9][0-9]{1,3}+[ /.-])[0-9]{3,8}+"
    r"(?:([ .-])[0-9]{3,8}+(?:\1[0-9]{3,8}+)?)?"
)
_PHONE_PAIRS: Final = re.compile(r"0[1-9]([ .-])[0-9]{2}(?:\1[0-9]{2}){3}")
_CARD: Final = re.compile(r"[0-9](?:[ -]?[0-9]){12,18}(?!\w|[.-][0-9])")
_IBAN: Final = re.compile(r"[A-Z]{2}[0-9]{2}(?:[ -]?[A-Za-z0-9]){10,31}")
_SSN: Final = re.compile(r"([0-9]{3})([- ])([0-9]{2})\2([0-9]{4})(?!\w|[.-][0-9])")
_IPV4: Final = re.compile(r"([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})(?!\w|\.[0-9])")
_IPV6: Final = re.compile(r"[0-9A-Fa-f:]{3,39}+(?![\w:])")


def _hit(kind: PiiType, start: int, end: int, detail: str) -> Hit:
    return Hit(f"pii.{kind.value}", "pii", start, end, REPLACEMENTS[kind], detail=detail)


def _after_token(text: str, position: int, extra: str = "") -> bool:
    """True when `position` starts a token: the character before is no letter, digit, `_`,
    nor one of `extra` (a card does not start after `.` or `-`: it would be part of a number)."""
    if position == 0:
        return True
    before = text[position - 1]
    return not (before.isalnum() or before == "_" or before in extra)


def _local(char: str) -> bool:
    return char.isalnum() or char in _LOCAL_CHARS


def find_emails(text: str) -> list[Hit]:
    hits = []
    at = text.find("@")
    while at >= 0:
        start = at
        while start > 0 and at - start < 64 and _local(text[start - 1]):
            start -= 1
        local_whole = start == 0 or not _local(text[start - 1])  # more than 64: no address
        domain = _EMAIL_DOMAIN.match(text, at + 1) if start < at and local_whole else None
        if domain is not None:
            hits.append(_hit(PiiType.EMAIL, start, domain.end(), "email address"))
        at = text.find("@", domain.end() if domain else at + 1)
    return hits


def find_phones_international(text: str) -> list[Hit]:
    hits = []
    plus = text.find("+")
    while plus >= 0:
        match = _PHONE_INTL.match(text, plus) if _after_token(text, plus, "+") else None
        end = _trim_phone(match.group()) if match else 0
        if end:
            hits.append(_hit(PiiType.PHONE, plus, plus + end, "phone number"))
        plus = text.find("+", plus + max(end, 1))
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


def _card(text: str, start: int) -> tuple[int, Hit | None]:
    match = _CARD.match(text, start)
    if match is None:
        return start, None
    raw = match.group()
    digits = raw.replace(" ", "").replace("-", "")
    groups = re.split(r"[ -]", raw)
    # printed cards group as 4-4-4-4, 4-6-5, 4-6-4 or 4-4-4-4-3: no short tail group
    grouped = len(groups) == 1 or (
        all(4 <= len(g) <= 6 for g in groups[:-1]) and 3 <= len(groups[-1]) <= 6
    )
    if grouped and digits[0] in "23456" and len(set(digits)) > 1 and luhn_valid(digits):
        return match.end(), _hit(PiiType.CARD, start, match.end(), "payment card (Luhn valid)")
    return match.end(), None


def _ssn(text: str, start: int) -> tuple[int, Hit | None]:
    match = _SSN.match(text, start)
    if match is None:
        return start, None
    if ssn_valid(match.group(1), match.group(3), match.group(4)):
        return match.end(), _hit(PiiType.SSN, start, match.end(), "US social security number")
    return match.end(), None


def _us_phone(text: str, start: int) -> tuple[int, Hit | None]:
    if start > 0 and text[start - 1] == "(":
        start -= 1
        if not _after_token(text, start, "+.-"):
            return start, None
    match = _PHONE_US.match(text, start)
    if match is None:
        return start, None
    return match.end(), _hit(PiiType.PHONE, start, match.end(), "US phone number")


def _phone(text: str, start: int) -> tuple[int, Hit | None]:
    if text[start] == "0":
        return _national_phone(text, start)
    return _us_phone(text, start)


def _national_phone(text: str, start: int) -> tuple[int, Hit | None]:
    """A national number with a trunk 0: 9 to 12 digits in all, grouped (a bare run of digits
    is an id), ending where the number ends (not inside a longer grouped number)."""
    if start > 0 and text[start - 1] == "(":
        begin = start - 1
        if not _after_token(text, begin, "+.-"):
            return start, None
        candidates: tuple[re.Match[str] | None, ...] = (_PHONE_NATIONAL.match(text, begin),)
    else:
        begin = start
        candidates = (_PHONE_PAIRS.match(text, start), _PHONE_NATIONAL.match(text, start))
    for match in candidates:
        if match is None or not _phone_ends(text, match.end()):
            continue
        raw = match.group()
        digits = sum(c.isdigit() for c in raw)
        groups = raw.replace("(", " ").replace(")", " ").replace("/", " ")
        sizes = [len(g) for g in re.split(r"[ .-]+", groups.strip())]
        if "." in raw and max(sizes) < 4 and match.re is _PHONE_NATIONAL:
            continue  # 010.100.100.100: an address or a version, not a phone
        if 9 <= digits <= 12:
            return match.end(), _hit(PiiType.PHONE, begin, match.end(), "national phone number")
    return start, None


def _phone_ends(text: str, end: int) -> bool:
    """Nothing glued to the number, and no further group of 3+ digits: `0123 4567 8901 2345`
    is a longer number (a card), not a phone and a remainder."""
    if end >= len(text):
        return True
    if text[end].isalnum() or text[end] == "_":
        return False
    if text[end] in " ./-" and text[end + 1 : end + 2].isdigit():
        run = end + 1
        while run < len(text) and text[run].isdigit():
            run += 1
        return text[end] == " " and run - end - 1 < 3
    return True


def _ipv4(text: str, start: int) -> tuple[int, Hit | None]:
    match = _IPV4.match(text, start)
    if match is None:
        return start, None
    if all(int(g) <= 255 and (g == "0" or g[0] != "0") for g in match.groups()):
        return match.end(), _hit(PiiType.IP, start, match.end(), "IPv4 address")
    return match.end(), None


def _iban(text: str, digits_start: int) -> tuple[int, Hit | None]:
    start = digits_start - 2
    if start < 0 or not _after_token(text, start):
        return digits_start, None
    match = _IBAN.match(text, start)
    length = IBAN_LENGTHS.get(text[start : start + 2])
    if match is None or length is None:
        return digits_start, None
    raw = match.group()
    end = _alnum_prefix_end(raw, length)  # the pattern is greedy; the country says where
    after = start + end  # the IBAN ends, and it must end at a token boundary
    if end and not (after < len(text) and text[after].isalnum()):
        compact = "".join(c for c in raw[:end] if c.isalnum()).upper()
        if iban_valid(compact):
            return after, _hit(PiiType.IBAN, start, after, "IBAN (mod-97 valid)")
    return digits_start, None


def _alnum_prefix_end(raw: str, count: int) -> int:
    seen = 0
    for index, char in enumerate(raw):
        if char.isalnum():
            seen += 1
            if seen == count:
                return index + 1
    return 0


# A cheap look at a digit run `text[start:end]` and the character after it (`follow`),
# enough to skip most runs (years, counts, prices) without trying a pattern.
def _card_shaped(text: str, start: int, end: int, follow: str) -> bool:
    return end - start >= 13 or (4 <= end - start <= 6 and follow in (" ", "-"))


def _ssn_shaped(text: str, start: int, end: int, follow: str) -> bool:
    return end - start == 3 and follow in (" ", "-")


def _phone_shaped(text: str, start: int, end: int, follow: str) -> bool:
    if text[start] == "0":  # a national trunk prefix: an area code of 2-5 digits
        return 2 <= end - start <= 5 and follow in (" ", ".", "-", ")", "/")
    return (end - start == 3 and follow in (" ", ".", "-", ")")) or (
        end - start == 1 and follow != ""
    )


def _ipv4_shaped(text: str, start: int, end: int, follow: str) -> bool:
    return end - start <= 3 and follow == "."


def _iban_shaped(text: str, start: int, end: int, follow: str) -> bool:
    letters = text[start - 2 : start] if start >= 2 else ""  # two capitals before the digits
    return end - start >= 2 and letters.isascii() and letters.isalpha() and letters.isupper()


_Shaped = Callable[[str, int, int, str], bool]
_Matcher = Callable[[str, int], tuple[int, Hit | None]]
_AT_DIGITS: Final[dict[PiiType, tuple[_Shaped, _Matcher, str]]] = {
    # kind: (cheap shape test, matcher tried at the run, characters that may not precede it)
    PiiType.CARD: (_card_shaped, _card, ".-"),
    PiiType.SSN: (_ssn_shaped, _ssn, ".-"),
    PiiType.PHONE: (_phone_shaped, _phone, "+.-"),
    PiiType.IP: (_ipv4_shaped, _ipv4, "."),
    PiiType.IBAN: (_iban_shaped, _iban, "\x00"),  # _iban checks its own boundary
}
_DIGIT_TO_ZERO: Final = bytes.maketrans(b"123456789", b"000000000")
_RUN_STARTS: Final = re.compile(rb"0(?<!00)0*+")  # on the digits-to-zero shape


_Try = tuple[_Shaped, _Matcher, str]


def _digit_runs(text: str, tries: tuple[_Try, ...], in_word_tries: tuple[int, ...]) -> list[Hit]:
    """Cards, SSNs, US phones, IPv4 addresses and IBANs: one pass over the digit runs, each
    kind tried where a run starts a token (an IBAN: two capitals before it), and not again
    inside what one of its own matches covered.

    The runs are found in a byte copy where every character is one byte (non-ASCII becomes
    `?`) and every digit is `0`: a pattern starting with a literal lets the regex engine
    skip ahead at memchr speed, where `[0-9]` would be tried at every position.
    """
    shape = text.encode("ascii", "replace").translate(_DIGIT_TO_ZERO)
    if b"0" not in shape:
        return []
    hits: list[Hit] = []
    covered = [0] * len(tries)  # per kind: where its last match ended
    every = range(len(tries))
    length = len(text)
    for run in _RUN_STARTS.finditer(shape):
        start, end = run.span()
        before = text[start - 1] if start else " "
        if before.isalnum() or before == "_":
            if not in_word_tries or not before.isupper():
                continue
            indexes: Iterable[int] = in_word_tries
        else:
            indexes = every
        follow = text[end] if end < length else ""
        for index in indexes:
            shaped, matcher, not_after = tries[index]
            if start < covered[index] or not shaped(text, start, end, follow):
                continue
            if not_after == "\x00" or _after_token(text, start, not_after):
                covered[index], hit = matcher(text, start)
                if hit:
                    hits.append(hit)
    return hits


def find_ipv6(text: str) -> list[Hit]:
    if "::" not in text and text.count(":") < 7:
        return []
    hits = []
    for match in _IPV6.finditer(text):
        if _after_token(text, match.start(), ":") and _plausible_ipv6(match.group()):
            hits.append(_hit(PiiType.IP, match.start(), match.end(), "IPv6 address"))
    return hits


def _plausible_ipv6(candidate: str) -> bool:
    if candidate.count(":") < 2:
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    groups = [g for g in candidate.split(":") if g]
    # "a::b" is a valid address, and also C++; ask for some substance
    return len(groups) >= 2 and (any(c.isdigit() for c in candidate) or max(map(len, groups)) >= 3)


_RUN_KINDS: Final = (PiiType.CARD, PiiType.SSN, PiiType.PHONE, PiiType.IP, PiiType.IBAN)


def find_pii(text: str, kinds: tuple[PiiType, ...] = tuple(PiiType)) -> list[Hit]:
    """Every item of the given kinds in `text`. Where two overlap (a phone inside a card
    number, a US phone inside an international one) the one that starts first and is longer
    is kept, so one thing gives one finding."""
    return pii_scanner(kinds)(text)


@functools.cache
def pii_scanner(kinds: tuple[PiiType, ...]) -> Callable[[str], list[Hit]]:
    """`find_pii` for `kinds`, with what it runs worked out once (a policy check's kinds)."""
    email = PiiType.EMAIL in kinds
    phone = PiiType.PHONE in kinds
    run_kinds = tuple(k for k in _RUN_KINDS if k in kinds)
    tries = tuple(_AT_DIGITS[kind] for kind in run_kinds)
    # a run inside a word ("tok1", "v2", "GB82..."): no kind but an IBAN starts there
    in_word_tries = tuple(i for i, kind in enumerate(run_kinds) if kind is PiiType.IBAN)
    ip = PiiType.IP in kinds
    secret = PiiType.SECRET in kinds

    def scan(text: str) -> list[Hit]:
        hits: list[Hit] = []
        if email and "@" in text:
            hits += find_emails(text)
        if phone and "+" in text:
            hits += find_phones_international(text)
        if tries:
            hits += _digit_runs(text, tries, in_word_tries)
        if ip:
            hits += find_ipv6(text)
        if secret:
            hits += find_secrets(text)
        return _dedupe(hits)

    return scan


def _dedupe(hits: list[Hit]) -> list[Hit]:
    if len(hits) < 2:
        return hits
    hits.sort(key=lambda h: (h.start, -h.end))
    kept = [hits[0]]
    for hit in hits[1:]:
        if hit.start >= kept[-1].end:
            kept.append(hit)
    return kept
