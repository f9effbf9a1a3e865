"""Request ids: UUID version 7, time first, so the store's indexes on `id` grow at one end."""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest

from monitor import record
from monitor.record import new_request_id


def test_an_id_is_a_version_7_uuid_in_32_hex_digits() -> None:
    for _ in range(1000):
        found = new_request_id()
        assert len(found) == 32 and found == found.lower()
        parsed = uuid.UUID(found)
        assert parsed.hex == found
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122


def test_its_first_48_bits_are_the_time_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    found = new_request_id()
    after = time.time_ns() // 1_000_000
    assert before <= int(found[:12], 16) <= after


def test_ids_made_in_later_milliseconds_sort_after_earlier_ones() -> None:
    ids = []
    for _ in range(5):
        ids.append(new_request_id())
        time.sleep(0.002)
    assert sorted(ids) == ids


def test_the_other_74_bits_are_random() -> None:
    ids = [new_request_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    values = [uuid.UUID(found).int for found in ids]
    rand_a = {value >> 64 & 0xFFF for value in values}
    rand_b = [value & (1 << 62) - 1 for value in values]
    assert len(rand_a) > 3000  # 12 bits: nearly all 4,096 values in 20,000 draws
    assert len(set(rand_b)) == len(ids)
    for bit in (0, 30, 61):  # each bit is set about half the time
        ones = sum(value >> bit & 1 for value in rand_b)
        assert 9000 < ones < 11_000


def test_random_bits_are_read_ahead_once_per_400_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """`os.urandom` lets go of the interpreter lock: the event loop's thread calls it once per
    400 ids, and the ids across each read stay distinct."""
    reads: list[int] = []

    def urandom(size: int) -> bytes:
        reads.append(size)
        return real(size)

    real = os.urandom
    monkeypatch.setattr(record.os, "urandom", urandom)
    monkeypatch.setattr(record, "_RANDOM", record._RandomBytes())  # an empty pool
    ids = [new_request_id() for _ in range(1000)]
    assert reads == [4000] * 3
    assert len(set(ids)) == 1000
    assert len({found[12:] for found in ids}) == 1000  # the random part too


def test_threads_draw_from_pools_of_their_own() -> None:
    found: list[list[str]] = [[] for _ in range(4)]

    def make(out: list[str]) -> None:
        out.extend(new_request_id() for _ in range(2000))

    threads = [threading.Thread(target=make, args=(out,)) for out in found]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [found_id for out in found for found_id in out]
    assert len(set(every)) == len(every) == 8000
