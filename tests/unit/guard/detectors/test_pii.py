"""PII detectors: golden true positives, and the look-alikes that must not fire."""

from __future__ import annotations

import pytest

from monitor.guard.checks import PiiType
from monitor.guard.detectors.checksums import iban_valid, luhn_valid, ssn_valid
from monitor.guard.detectors.pii import find_pii
from monitor.guard.detectors.redaction import redact


def redacted(text: str, *kinds: PiiType) -> str:
    return redact(text, find_pii(text, kinds or tuple(PiiType)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail bob.smith+tag@example.co.uk now", "mail [EMAIL] now"),
        ("<jane_doe@mail.example.org>", "<[EMAIL]>"),
        ("Ünïcödé@example.com", "[EMAIL]"),
        ("a@b.c and x@y", "a@b.c and x@y"),  # no real top-level domain
        ("user@localhost", "user@localhost"),
        ("@handle and foo@", "@handle and foo@"),
    ],
)
def test_emails(text: str, expected: str) -> None:
    assert redacted(text, PiiType.EMAIL) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+44 20 7946 0958", "[PHONE]"),
        ("+49 30 1234567.", "[PHONE]."),
        ("+1 (415) 555-2671", "[PHONE]"),
        ("+33 1 23 45 67 89 in 2024", "[PHONE] in 2024"),  # a year after it is not swallowed
        ("(415) 555-2671", "[PHONE]"),
        ("415-555-2671", "[PHONE]"),
        ("415.555.2671", "[PHONE]"),
        ("1-415-555-2671", "[PHONE]"),
        ("call 415 555 2671 now", "call [PHONE] now"),
    ],
)
def test_phones(text: str, expected: str) -> None:
    assert redacted(text, PiiType.PHONE) == expected


@pytest.mark.parametrize(
    "text",
    [
        "in 2024 we grew 15%",
        "order #123456789 shipped",
        "order 4155552671",  # a bare run of digits is an id, not a phone
        "dates 2024-01-15 and 15.01.2024",
        "version 1.2.3",
        "+12 345",  # too short
        "123-456-7890",  # no NANP area code starts with 1
        "the score was 3-2-1",
        "x+1234567890123456789",  # too long, glued to a word
    ],
)
def test_not_phones(text: str) -> None:
    assert redacted(text, PiiType.PHONE) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("card 4111 1111 1111 1111 ok", "card [CARD] ok"),
        ("4111-1111-1111-1111", "[CARD]"),
        ("4111111111111111", "[CARD]"),
        ("amex 3782 822463 10005", "amex [CARD]"),
        ("mc 5555555555554444.", "mc [CARD]."),
    ],
)
def test_cards(text: str, expected: str) -> None:
    assert redacted(text, PiiType.CARD) == expected


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # fails Luhn
        "4111111111111112",
        "order 1234567812345678",  # fails Luhn
        "0000 0000 0000 0000",  # passes Luhn, no issuer
        "1111111111111117",  # passes Luhn, starts with 1
        "9999999999999995",  # starts with 9
        "DE89 3704 0044 0532 0130 01",  # a bad IBAN's digits are no card either
        "3.1415926535897932384",  # decimals
    ],
)
def test_not_cards(text: str) -> None:
    assert redacted(text, PiiType.CARD) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("iban DE89 3704 0044 0532 0130 00.", "iban [IBAN]."),
        ("DE89370400440532013000", "[IBAN]"),
        ("GB82 WEST 1234 5698 7654 32 and more", "[IBAN] and more"),
        ("FR14 2004 1010 0505 0001 3M02 606", "[IBAN]"),
        ("NO9386011117947", "[IBAN]"),
    ],
)
def test_ibans(text: str, expected: str) -> None:
    assert redacted(text, PiiType.IBAN) == expected


@pytest.mark.parametrize(
    "text",
    [
        "DE89 3704 0044 0532 0130 01",  # fails mod-97
        "DE88370400440532013000",
        "XX89370400440532013000",  # no such country
        "DE8937040044053201300",  # one character short for Germany
        "AB12CDEFGHIJKLMNOP",
    ],
)
def test_not_ibans(text: str) -> None:
    assert redacted(text, PiiType.IBAN) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ssn 123-45-6789.", "ssn [SSN]."),
        ("078 05 1120", "[SSN]"),
    ],
)
def test_ssns(text: str, expected: str) -> None:
    assert redacted(text, PiiType.SSN) == expected


@pytest.mark.parametrize(
    "text",
    [
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "999-12-3456",
        "123-00-4567",
        "123-45-0000",
        "123-45 6789",  # mixed separators
        "123456789",  # bare digits: too ambiguous
        "1123-45-6789",
    ],
)
def test_not_ssns(text: str) -> None:
    assert redacted(text, PiiType.SSN) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host 192.168.1.10.", "host [IP]."),
        ("0.0.0.0 and 255.255.255.255", "[IP] and [IP]"),
        ("v6 2001:db8::8a2e:370:7334 here", "v6 [IP] here"),
        ("fe80::1", "[IP]"),
        ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "[IP]"),
    ],
)
def test_ips(text: str, expected: str) -> None:
    assert redacted(text, PiiType.IP) == expected


@pytest.mark.parametrize(
    "text",
    [
        "999.1.1.1",
        "1.2.3.4.5",
        "version 1.2.3",
        "at 12:30:45",
        "std::vector and a::b",
        "01.02.03.04",  # leading zeros: a date-like code, not an address
    ],
)
def test_not_ips(text: str) -> None:
    assert redacted(text, PiiType.IP) == text


def test_overlaps_give_one_finding() -> None:
    text = "+1 415 555 2671"
    hits = find_pii(text)
    assert [h.rule for h in hits] == ["pii.phone"]
    assert (hits[0].start, hits[0].end) == (0, len(text))


def test_findings_carry_no_content() -> None:
    for hit in find_pii("bob@example.com 4111 1111 1111 1111"):
        assert "bob" not in (hit.detail or "") and "4111" not in (hit.detail or "")


def test_checksums() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("DE89370400440532013000") and not iban_valid("DE89370400440532013001")
    assert not iban_valid("DE89") and not iban_valid("DE8937040044053201300٣")
    assert ssn_valid("123", "45", "6789") and not ssn_valid("666", "45", "6789")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call (415) 555-0132 today", "call [PHONE] today"),
        ("415-555-0132", "[PHONE]"),
        ("UK office 020 7946 0958.", "UK office [PHONE]."),
        ("mobile 07700 900123", "mobile [PHONE]"),
        ("Manchester 0161 496 0000", "Manchester [PHONE]"),
        ("Berlin 030 1234567", "Berlin [PHONE]"),
        ("030/1234567", "[PHONE]"),
        ("(030) 1234567", "[PHONE]"),
        ("München 089-12345678", "München [PHONE]"),
        ("Paris 01 23 45 67 89", "Paris [PHONE]"),
        ("portable 06.12.34.56.78", "portable [PHONE]"),
        ("020 7946 0958 2 times", "[PHONE] 2 times"),
    ],
)
def test_national_phones(text: str, expected: str) -> None:
    assert redacted(text, PiiType.PHONE) == expected


@pytest.mark.parametrize(
    "text",
    [
        "dates 01.02.2024 10:30 and 01 02 2024",
        "version 0.12.3 and v01.23.45",
        "010.100.100.100",
        "0123 4567 8901 2345",  # a longer grouped number: a card, not a phone and a remainder
        "order 0123456789",  # a bare run of digits is an id
        "ISBN 0-306-40615-2",
        "at 09:30, room 0 2024",
        "card ending 0123 4567",
        "ref 01-23-45-67-89x",
        "from 2024-01-15 to 15.01.2024",
    ],
)
def test_not_national_phones(text: str) -> None:
    assert redacted(text, PiiType.PHONE) == text
