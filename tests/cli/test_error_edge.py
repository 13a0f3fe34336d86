"""Errors that escape the layers below still reach the user as their documented exit codes."""


def test_sqlite_disk_full_reaches_the_user_as_a_disk_error():
    import sqlite3

    from mlvc.cli.error_table import as_error
    from mlvc.errors import EXIT_DISK

    assert as_error(sqlite3.OperationalError("database or disk is full")).exit_code == EXIT_DISK
    assert as_error(sqlite3.OperationalError("disk I/O error")).exit_code == EXIT_DISK
    assert as_error(sqlite3.OperationalError("no such table: x")) is None
    assert as_error(ValueError("database or disk is full")) is None


def test_a_connection_cut_that_escapes_the_remote_layer_is_exit_9():
    import aiohttp

    from mlvc.cli.error_table import as_error
    from mlvc.errors import EXIT_REMOTE

    cut = aiohttp.ClientPayloadError("Response payload is not completed")
    assert as_error(cut).exit_code == EXIT_REMOTE
    assert as_error(ValueError("x")) is None
