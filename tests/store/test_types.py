"""The named types at the store's seams (mlvc/store/types.py): what `PackStore.location` answers,
how an artifact's root becomes a store key, and that a pending object is told apart from a
published one by its type."""

from pathlib import Path

from mlvc.chunking import ChunkerParams
from mlvc.hashing import digest, from_oid, to_oid
from mlvc.pointer import PointerFile
from mlvc.store.local import LocalBackend
from mlvc.store.memory import MemoryBackend
from mlvc.store.packs import CHUNK, FILE_MANIFEST, TREE_MANIFEST
from mlvc.store.packstore import PackStore, Role
from mlvc.store.transfer import Artifact
from mlvc.store.types import Location, Root, root_key


def test_location_names_the_pack_by_name_and_its_fields(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "cache")
    backend.ensure_base()
    store = PackStore(backend, role=Role.CACHE, scratch=tmp_path / "cache" / "tmp", marks=tmp_path / "m.sqlite")
    data = b"x" * 5000
    oid, _new = store.put_chunk(data)
    store.commit()
    loc = store.location(CHUNK, oid)
    assert isinstance(loc, Location)
    assert loc.pack in store.pack_names() and loc.raw == len(data)
    assert store.read_stored(loc.pack, loc.offset, loc.stored) == store.stored_form(CHUNK, oid)[1]
    store.close()


def test_an_artifacts_root_key_from_a_root_or_a_pointer() -> None:
    oid = to_oid(digest(b"tree"))
    assert Artifact("d", Root("dir", oid)).root == (TREE_MANIFEST, from_oid(oid)) == root_key(Root("dir", oid, 3))
    ptr = PointerFile(path="w.bin", kind="file", oid=oid, size=7, files=1, chunker=ChunkerParams())
    assert Artifact("w.bin", ptr).root == (FILE_MANIFEST, from_oid(oid))


def test_objects_in_the_pack_being_written_read_like_published_ones(tmp_path: Path) -> None:
    """Unpublished objects are found (as `Pending`) by `get`, `iter_stored` and `stored_form`,
    and a published neighbour still reads in the same call."""
    store = PackStore(MemoryBackend(), role=Role.REMOTE, scratch=tmp_path / "s")
    old, _ = store.put_chunk(b"published " * 50)
    store.commit()
    new, _ = store.put_chunk(b"pending " * 50)  # not committed: still in the store's writer
    assert store.get(CHUNK, new) == b"pending " * 50
    got = [(key, data, error) for key, _c, _p, _raw, data, error in store.iter_stored([(CHUNK, new), (CHUNK, old)])]
    assert got == [((CHUNK, new), b"pending " * 50, None), ((CHUNK, old), b"published " * 50, None)]
    c, payload, raw = store.stored_form(CHUNK, new)
    assert raw == 400 and store.location(CHUNK, old).raw == 500
    store.close()
