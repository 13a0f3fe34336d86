"""Remotes: where packs and other immutable objects are shared between machines.

`backend.RemoteBackend` moves bytes to and from a remote (a local or NFS
directory, S3, or any fsspec URL); `lock.RemoteLock` serialises operations such
as garbage collection that must not run twice at once against one remote.
"""
