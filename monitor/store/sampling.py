"""Record sampling: which finished requests are stored, and the weight each stored one carries.

Every request that is not a plain success is stored, weight 1: errors, refusals (blocked,
invalid, rate limited), clients that went away, and successful requests a guard flagged or
redacted. Of the plain successes, one in N is stored, with weight N (`sampling.share = 1/N`).
Every count the store reads sums the weights, every mean and histogram weighs values by them,
so figures stay unbiased: a success is stored with probability 1/N and counts N when it is.

Why an integer N (Honeycomb's "sample rate") rather than any share with a fractional weight:
counts and histogram buckets stay whole numbers, so the rollups' integer columns, the
histograms and percentile ranks (a value of weight N is N equal values) need no change of
type, and a rollup read adds weights exactly, without rounding.

Which success is stored: the successes are cut into consecutive blocks of N, and one place in
each block, drawn at random, is stored. Each success is still stored with probability exactly
1/N (unbiased), but unlike a coin toss per request, N consecutive successes always leave one
record: a window's estimated count is off by less than 2N (a partial block at each end; a
coin toss would be off by about sqrt(count * N)), and a window with 2N successes or more
never looks like one without any (the `no_successful_requests` rule). The random place within
each block keeps a periodic client (say, a stream every other request) from being always or
never sampled.

`Sampler.weight` runs on the event loop for every finished request (its only caller,
`Recorder.submit`): a comparison and, once per block, a random draw. Not thread-safe: one
event loop calls it.
"""

from __future__ import annotations

import random

from monitor.record import RequestRecord

_NOT_FLAGGED = "allow"


def always_kept(record: RequestRecord) -> bool:
    """Whether a record is stored whatever the share: anything but a success no guard
    flagged or redacted."""
    if record.outcome != "ok":
        return True
    return any(verdict.get("action", _NOT_FLAGGED) != _NOT_FLAGGED for verdict in record.verdicts)


class Sampler:
    """Keeps one plain success in `keep_one_in`, and every other record."""

    __slots__ = ("_pick", "_place", "_rng", "keep_one_in", "sampled_out_total")

    def __init__(self, keep_one_in: int = 1, *, rng: random.Random | None = None) -> None:
        if keep_one_in < 1:
            raise ValueError(f"keep_one_in must be a whole number of at least 1, not {keep_one_in}")
        self.keep_one_in = keep_one_in
        self._rng = rng if rng is not None else random.Random()
        self._place = 0  # the next success's place in its block, 0 .. keep_one_in - 1
        self._pick = 0  # the place stored in the current block
        self.sampled_out_total = 0  # successes not stored, counted for /metrics

    @property
    def share(self) -> float:
        return 1.0 / self.keep_one_in

    def weight(self, record: RequestRecord) -> int:
        """The weight to store `record` with; 0: not stored."""
        n = self.keep_one_in
        if n == 1 or always_kept(record):
            return 1
        place = self._place
        if place == 0:
            self._pick = self._rng.randrange(n)
        self._place = place + 1 if place + 1 < n else 0
        if place == self._pick:
            return n
        self.sampled_out_total += 1
        return 0
