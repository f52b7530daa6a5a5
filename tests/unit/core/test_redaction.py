"""What a task's owner may read of an error: no credentials, no hosts or roles of ours, no stack."""

from __future__ import annotations

import pytest
from busline_core.contracts import Phase
from busline_core.errors import SourceUnreadable
from busline_core.redaction import display_url, public_message
from busline_core.task_state import ERROR_MESSAGE_LIMIT, task_error

CASES = [
    (
        "a source URL with credentials and a presigned query",
        "source https://ana:s3cret@data.example.com/a.csv?X-Amz-Signature=abc&token=t#frag is unreadable: 404",
        "source https://data.example.com/a.csv is unreadable: 404",
    ),
    (
        "a database URL",
        "cannot connect to postgresql://busline_load:pw@db.internal:5432/busline: timeout",
        "cannot connect to postgresql://<hidden>: timeout",
    ),
    (
        "libpq's connection failure",
        'cannot connect to the warehouse: connection to server at "10.0.3.7" (10.0.3.7), port 5432 failed: '
        'FATAL:  password authentication failed for user "busline_load"',
        "cannot connect to the warehouse: connection to server failed: "
        "FATAL:  password authentication failed for user <hidden>",
    ),
    (
        "a Unix socket",
        'connection to server on socket "/tmp/.s.PGSQL.5432" failed: No such file or directory',
        "connection to server failed: No such file or directory",
    ),
    (
        "a connection string",
        "invalid dsn: host=db.internal user=busline password=hunter2 dbname=busline",
        "invalid dsn: host=<hidden> user=<hidden> password=<hidden> dbname=busline",
    ),
    (
        "a role named by Postgres",
        'permission denied for schema t_1; role "busline_load" cannot create',
        "permission denied for schema t_1; role <hidden> cannot create",
    ),
    (
        "a stack",
        'LoadFailed: boom\nTraceback (most recent call last):\n  File "/var/task/app.py", line 3, in <module>',
        "LoadFailed: boom",
    ),
    (
        "an ordinary data error",
        "column dep_time: 'x' is not a valid int (row 17)",
        "column dep_time: 'x' is not a valid int (row 17)",
    ),
]


@pytest.mark.parametrize(("raw", "shown"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_public_message_hides_what_is_not_the_owners(raw: str, shown: str) -> None:
    # Given an error text / When it is made public / Then only what the owner may see is left
    assert public_message(raw) == shown


def test_display_url_keeps_scheme_host_port_and_path_only() -> None:
    assert display_url("HTTPS://u:p@[::1]:8443/x/y.csv?q=1#f") == "https://[::1]:8443/x/y.csv"


def test_an_unreadable_source_never_repeats_the_uris_credentials() -> None:
    # Given a source URI with a password and a signature
    error = SourceUnreadable("https://u:p@h.example/f.csv?sig=1", "404")
    # Then the message shows the URI without them, while the exception keeps it for the logs
    assert error.message == "source https://h.example/f.csv is unreadable: 404"
    assert error.uri == "https://u:p@h.example/f.csv?sig=1"


def test_a_task_error_is_public_and_bounded() -> None:
    # Given a failure message with a database URL and far longer than the limit
    message = "postgresql://u:p@db:5432/x refused " + "z" * 5000
    # When it becomes the task's error
    error = task_error(Phase.LOAD, 3, message)
    # Then it is scrubbed, then cut to ERROR_MESSAGE_LIMIT characters
    assert error.message.startswith("postgresql://<hidden> refused zzz")
    assert len(error.message) == ERROR_MESSAGE_LIMIT == 2000
