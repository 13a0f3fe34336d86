"""ops.common: the merge-join of tree entries and workspace files."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=200, deadline=None)
@given(st.sets(st.text("ab/-.", min_size=1, max_size=4)), st.sets(st.text("ab/-.", min_size=1, max_size=4)))
def test_paired_joins_two_sorted_listings_like_a_dict(tree_paths, workspace_paths) -> None:
    from mlvc.objects import TreeEntry
    from mlvc.ops.common import paired
    from mlvc.workspace import FileStat

    entries = [TreeEntry(p, 1, b"\0" * 16) for p in sorted(tree_paths)]
    files = [FileStat(p, p, 1, 0, 0, False) for p in sorted(workspace_paths)]
    got = [(e.path if e else None, j, f.rel if f else None, i) for e, j, f, i in paired(entries, files)]
    expected = []
    for path in sorted(tree_paths | workspace_paths):
        j = sorted(tree_paths).index(path) if path in tree_paths else -1
        i = sorted(workspace_paths).index(path) if path in workspace_paths else -1
        expected.append((path if j >= 0 else None, j, path if i >= 0 else None, i))
    assert got == expected


@settings(max_examples=200, deadline=None)
@given(st.sets(st.text("ab/-.", min_size=1, max_size=5)), st.text("ab/-.", min_size=1, max_size=4))
def test_a_selection_inside_an_artifact_covers_what_a_pass_over_every_entry_finds(tree_paths, inner) -> None:
    from pathlib import Path

    from mlvc.objects import TreeEntries, TreeEntry
    from mlvc.ops.common import Tracked

    entries = [TreeEntry(p, 1, b"\0" * 16) for p in sorted(tree_paths)]
    t = Tracked(Path("d.mlvc"), "d.mlvc", None, inner=inner)
    expected = [e for e in entries if e.path == inner or e.path.startswith(inner + "/")]
    assert list(t.within(entries)) == expected
    assert list(t.within(TreeEntries.pack(entries))) == expected  # packed, as trees are read
    assert list(Tracked(Path("d.mlvc"), "d.mlvc", None).within(entries)) == entries
