"""mlvc/store/records.py: the one grouping of a pack's records into runs read at once."""

from __future__ import annotations

from mlvc.store.packs import CHUNK, IndexEntry
from mlvc.store.records import COALESCE_LIMIT, entries_in_runs


def entry(offset: int, stored: int) -> IndexEntry:
    return IndexEntry(offset.to_bytes(16, "big"), CHUNK, 0, offset, stored, stored)


def offsets(runs: list[list[IndexEntry]]) -> list[list[int]]:
    return [[e.offset for e in run] for run in runs]


def test_runs_are_bounded_in_span_and_given_a_gap_in_what_they_skip() -> None:
    entries = [entry(3000, 100), entry(0, 1000), entry(1000, 1000), entry(70_000, 10),
               entry(COALESCE_LIMIT, 5)]
    assert offsets(list(entries_in_runs(entries))) == [[0, 1000, 3000, 70_000], [COALESCE_LIMIT]]
    # a partial read skips at most `gap` bytes between records (3000 - 2000 = 1000 <= 1000)
    assert offsets(list(entries_in_runs(entries, gap=1000))) == [[0, 1000, 3000], [70_000], [COALESCE_LIMIT]]
    assert offsets(list(entries_in_runs(entries, gap=999))) == [[0, 1000], [3000], [70_000], [COALESCE_LIMIT]]
    # the gap is measured from the furthest end so far, not the last record's
    nested = [entry(0, 5000), entry(100, 10), entry(5500, 10)]
    assert offsets(list(entries_in_runs(nested, gap=600))) == [[0, 100, 5500]]
    assert list(entries_in_runs([], gap=10)) == []
