"""mlvc: version control for machine-learning artifacts.

    import mlvc
    mlvc.add("checkpoints", role="model")
    mlvc.status()
    mlvc.checkout()
    with mlvc.open("data/table.csv", rev="v1", mode="r") as f:   # any version, no checkout
        ...

Heavy modules are imported lazily so that `import mlvc` (and the CLI) start fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {"init", "add", "status", "checkout", "verify", "open", "read", "push", "pull", "fetch", "diff", "log",
        "manifest", "gc"}


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        return getattr(api, name)
    if name in ("Repo",):
        from .repo import Repo

        return Repo
    import importlib

    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{name}":
            raise AttributeError(f"module 'mlvc' has no attribute {name!r}") from None
        raise


__all__ = sorted(_API | {"Repo", "__version__"})
