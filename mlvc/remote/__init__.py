"""Remotes as the user configures them (`config`: names, URLs, secrets, the default one).

The stores themselves are `mlvc.store.packstore.PackStore` on a backend of `mlvc.store`,
the same class as the local cache; `Repo.remote_store` builds one from a definition here.
"""
