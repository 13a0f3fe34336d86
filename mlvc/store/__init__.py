"""Storage primitives: pack files, the local cache, the hash cache."""
