"""Rows with a path each, kept packed: the paths in one UTF-8 blob with end offsets, the other
columns in arrays kept by the subclass.

Why: a million tree entries or scanned files as Python objects cost ~250 bytes each; packed they
cost ~50-60.  A row object is built only when one is asked for (indexing, iterating)."""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence


class PackedPaths(Sequence):
    __slots__ = ("_paths", "_ends")

    def __init__(self, paths: bytes | bytearray, ends: array) -> None:
        self._paths, self._ends = paths, ends

    def _row(self, i: int, path: str):
        """The row object of index `i`, whose path is `path` (the subclass's columns)."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self._ends)

    def path(self, i: int) -> str:
        start = self._ends[i - 1] if i else 0
        return self._paths[start:self._ends[i]].decode("utf-8", "surrogateescape")

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self._ends)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"{type(self).__name__} index out of range")
        return self._row(i, self.path(i))

    def __iter__(self) -> Iterator:
        paths = self._paths
        start = 0
        for i, end in enumerate(self._ends):
            yield self._row(i, paths[start:end].decode("utf-8", "surrogateescape"))
            start = end
