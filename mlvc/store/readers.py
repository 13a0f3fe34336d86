"""Reading an object from the first of several stores that has it: the one home of "read it from
A, else from B" (the cache in front of a remote for a remote gc's walk, the cache behind a store
being verified)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from ..errors import MlvcError
from ..objects import TreeManifest
from .packs import TREE_MANIFEST
from .packstore import PackStore

_T = TypeVar("_T")


class FirstThatHas:
    """Reads verified objects from `stores`, in order of preference: each from the first store
    that has it; a copy that cannot be read (damaged, unreadable) falls through to the next store
    that has it.  `primary` (one of `stores`: the store the caller is about) is always asked,
    and when no store serves an object, its error is the one raised."""

    def __init__(self, stores: Sequence[PackStore], primary: PackStore) -> None:
        self.stores = list(dict.fromkeys(stores))  # the same store twice is asked once
        if primary not in self.stores:
            raise ValueError("the primary store must be one of the stores")
        self.primary = primary

    def get(self, typ: int, oid: bytes) -> bytes:
        return self._read(lambda store: store.get(typ, oid), typ, oid)

    def tree(self, oid: bytes) -> TreeManifest:
        return self._read(lambda store: store.tree(oid), TREE_MANIFEST, oid)

    def _read(self, read: Callable[[PackStore], _T], typ: int, oid: bytes) -> _T:
        primary_error: MlvcError | None = None
        for store in self.stores:
            if store is not self.primary and not store.has_any(typ, oid):
                continue
            try:
                return read(store)
            except MlvcError as exc:
                if store is self.primary:
                    primary_error = exc
        assert primary_error is not None  # the primary is always asked, and it did not serve it
        raise primary_error


__all__ = ["FirstThatHas"]
