"""Suites that cut across the package: crash and kill safety, disk full, concurrency and storms against
real remotes, remote faults and outages, containment, golden fixtures, the hostile corpus, properties,
scale, docs, the README path and the layering contracts. The tests of one module sit at its mirrored
path (tests/store/test_X.py for mlvc/store/X.py; test_X_topic.py when a module has several files)."""
