"""The lists of recent verdicts and lowest scores follow the model and backend filter, as the
charts beside them do."""

from __future__ import annotations

from datetime import timedelta

from monitor.store import views
from tests.integration.dashboard.conftest import Store


def test_recent_verdicts_and_lowest_scores_keep_to_the_chosen_model_and_backend(
    store: Store,
) -> None:
    since, until = store.now - timedelta(hours=1), store.now + timedelta(minutes=1)
    by_id = {r.id: r for r in store.records}
    flagged = {r.id for r in store.records if any(v["action"] != "allow" for v in r.verdicts)}
    models = sorted({r.model for r in store.records if r.model})
    backends = sorted({r.backend for r in store.records if r.backend})
    assert flagged and models and backends

    everything = views.recent_verdicts(store.engine, since, until, limit=1000)
    assert {v.request_id for v in everything} == flagged
    for model in models:
        shown = views.recent_verdicts(store.engine, since, until, limit=1000, model=model)
        assert {v.request_id for v in shown} == {i for i in flagged if by_id[i].model == model}
        lowest = views.lowest_scores(store.engine, since, until, limit=1000, model=model)
        expected = {s.request_id for s in store.scores if by_id[s.request_id].model == model}
        assert {s.request_id for s in lowest} == expected
        assert all(s.model == model for s in lowest)
    for backend in backends:
        shown = views.recent_verdicts(store.engine, since, until, limit=1000, backend=backend)
        expected = {i for i in flagged if by_id[i].backend == backend}
        assert {v.request_id for v in shown} == expected
    assert views.recent_verdicts(store.engine, since, until, model="no-such-model") == []
    assert views.lowest_scores(store.engine, since, until, backend="http://elsewhere") == []
