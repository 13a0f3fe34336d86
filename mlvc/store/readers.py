"""Reading an object from the first of several stores that has it: the one home of "read it from
A, else from B" (the cache in front of a remote for a remote gc's walk, the cache behind a store
being verified, a transfer's destination in front of its source, the cache in front of the
remote a read fetches from)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from ..errors import MlvcError, ObjectNotFoundError
from ..objects import TreeManifest
from .packs import TREE_MANIFEST
from .packstore import PackStore
from .types import Key, Location, StoredItem

_T = TypeVar("_T")


class FirstThatHas:
    """Reads verified objects from `stores`, in order of preference: each from the first store
    that has it; a copy that cannot be read (damaged, unreadable) falls through to the next store
    that has it.  `primary` (one of `stores`: the store the caller is about) is always asked,
    and when no store serves an object, its error is the one raised.

    `rescan`: whether a store other than the primary looks for packs other processes published
    meanwhile before it says it lacks an object (`PackStore.has_any`; a transfer, which knows
    what its destination held when it began, asks `has`).  `fetch`: brings an object no store
    has from elsewhere (a read-through cache: the remote's copy, kept in the cache) and returns
    its bytes; asked only when no store has the object at all."""

    def __init__(self, stores: Sequence[PackStore], primary: PackStore, *, rescan: bool = True,
                 fetch: Callable[[int, bytes], bytes] | None = None) -> None:
        self.stores = list(dict.fromkeys(stores))  # the same store twice is asked once
        if primary not in self.stores:
            raise ValueError("the primary store must be one of the stores")
        self.primary = primary
        self.rescan = rescan
        self.fetch = fetch

    def get(self, typ: int, oid: bytes) -> bytes:
        return self._read(lambda store: store.get(typ, oid), typ, oid, lambda body: body)

    def tree(self, oid: bytes) -> TreeManifest:
        return self._read(lambda store: store.tree(oid), TREE_MANIFEST, oid,
                          lambda body: TreeManifest.decode(body, oid))

    def candidates(self, typ: int, oid: bytes) -> list[PackStore]:
        """The stores to read an object from, in order: those that have it, and the primary."""
        return [store for store in self.stores if store is self.primary or self._has(store, typ, oid)]

    def location(self, typ: int, oid: bytes) -> Location:
        """Where the first store that has it keeps an object; the primary's error otherwise."""
        for store in self.candidates(typ, oid):
            if store is not self.primary:
                try:
                    return store.location(typ, oid)
                except ObjectNotFoundError:
                    continue  # pending there, not published yet
        return self.primary.location(typ, oid)

    def iter_stored(self, keys: Iterable[Key]) -> Iterator[tuple[PackStore, StoredItem]]:
        """(the store that served it, its `PackStore.iter_stored` item) for each key: copies the
        other stores have are read one at a time (local reads, usually), the rest from the
        primary in one batch, in its pack order (coalesced ranged reads).  A failed item is the
        primary's."""
        from_primary: list[Key] = []
        for key in keys:
            for store in self.candidates(*key):
                if store is self.primary:
                    from_primary.append(key)
                    break
                item = next(store.iter_stored([key]))
                if item[5] is None:
                    yield store, item
                    break
        from_primary.sort(key=self._primary_position)
        for item in self.primary.iter_stored(from_primary):
            yield self.primary, item

    def _primary_position(self, key: Key) -> tuple[str, int]:
        try:
            loc = self.primary.location(*key)
        except ObjectNotFoundError:
            return ("", 0)
        return (loc.pack, loc.offset)

    def _has(self, store: PackStore, typ: int, oid: bytes) -> bool:
        return store.has_any(typ, oid) if self.rescan else store.has(typ, oid)

    def _read(self, read: Callable[[PackStore], _T], typ: int, oid: bytes,
              from_bytes: Callable[[bytes], _T]) -> _T:
        primary_error: MlvcError | None = None
        for store in self.stores:
            if store is not self.primary and not self._has(store, typ, oid):
                continue
            try:
                return read(store)
            except MlvcError as exc:
                if store is self.primary:
                    primary_error = exc
        assert primary_error is not None  # the primary is always asked, and it did not serve it
        if (self.fetch is not None and isinstance(primary_error, ObjectNotFoundError)
                and not any(self._has(store, typ, oid) for store in self.stores)):
            return from_bytes(self.fetch(typ, oid))
        raise primary_error


__all__ = ["FirstThatHas"]
