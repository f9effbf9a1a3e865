"""Probe samples and quality scores: writes from the workers, reads for summaries and the API.

Both tables are in long form (one row per value), so a new probe metric or scorer needs no
migration. Workers call these functions from a thread (`asyncio.to_thread`): each opens one
short transaction. Quality scores are upserted: a second score of the same request by the same
scorer (user feedback sent twice, say) replaces the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from monitor.store.inserts import fixed_chunks, upsert_insert
from monitor.store.models import probe_samples_table, quality_scores_table

_p = probe_samples_table.c
_q = quality_scores_table.c


@dataclass(frozen=True, slots=True)
class ProbeValue:
    """One probe reading: `metric` of `target` (the host, a GPU index, the backend URL)."""

    ts: datetime
    probe: str  # system, gpu, health, backend
    metric: str
    value: float | None
    target: str = ""
    detail: str | None = None

    def as_row(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "probe": self.probe,
            "metric": self.metric,
            "target": self.target,
            "value": self.value,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class QualityScore:
    """One score (0..1) of one request by one scorer."""

    request_id: str
    ts: datetime
    scorer: str  # heuristic, embedding, judge, guard, user
    metric: str  # relevance, coherence, safety, factual_accuracy, overall, similarity, ...
    value: float
    detail: dict[str, Any] | None = None

    def as_row(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "ts": self.ts,
            "scorer": self.scorer,
            "metric": self.metric,
            "value": self.value,
            "detail": self.detail,
        }


def write_probe_values(engine: Engine, values: Sequence[ProbeValue]) -> int:
    """Insert readings in one transaction; returns how many."""
    if not values:
        return 0
    with engine.begin() as conn:
        conn.execute(insert(probe_samples_table), [v.as_row() for v in values])
    return len(values)


def write_quality_scores(engine: Engine, scores: Sequence[QualityScore]) -> int:
    """Upsert scores on (request, scorer, metric) in one transaction; returns how many."""
    if not scores:
        return 0
    rows = [s.as_row() for s in scores]
    stmt = upsert_insert(quality_scores_table, engine.dialect.name)
    stmt = stmt.on_conflict_do_update(
        index_elements=["request_id", "scorer", "metric"],
        set_={"value": stmt.excluded.value, "ts": stmt.excluded.ts, "detail": stmt.excluded.detail},
    )
    # RETURNING: SQLAlchemy then sends INSERTs of many rows, in chunks of a few sizes (see
    # `inserts.insert_rows`)
    stmt = stmt.returning(quality_scores_table.c.request_id)
    with engine.begin() as conn:
        for chunk in fixed_chunks(rows):
            conn.execute(stmt, chunk).all()
    return len(rows)


def probe_values(
    engine: Engine,
    *,
    metric: str | None = None,
    probe: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
) -> list[ProbeValue]:
    """Readings in `since <= ts < until`, newest first."""
    query = select(probe_samples_table)
    if metric is not None:
        query = query.where(_p.metric == metric)
    if probe is not None:
        query = query.where(_p.probe == probe)
    if since is not None:
        query = query.where(_p.ts >= since)
    if until is not None:
        query = query.where(_p.ts < until)
    query = query.order_by(_p.ts.desc(), _p.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [
            ProbeValue(r.ts, r.probe, r.metric, r.value, r.target, r.detail)
            for r in conn.execute(query)
        ]


def quality_scores_for(engine: Engine, request_ids: Iterable[str]) -> list[QualityScore]:
    """Every score of the given requests."""
    ids = list(request_ids)
    if not ids:
        return []
    query = select(quality_scores_table).where(_q.request_id.in_(ids)).order_by(_q.id)
    with engine.connect() as conn:
        return [
            QualityScore(r.request_id, r.ts, r.scorer, r.metric, r.value, r.detail)
            for r in conn.execute(query)
        ]
