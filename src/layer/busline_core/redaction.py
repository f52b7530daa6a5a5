"""What of an error a task's owner may see: never credentials, hosts or users of our own services, nor a
stack. The whole error (with the task id) goes to the logs; the task item, the API, the WebSocket and the
SNS notification carry only `public_message`.

Imports nothing of the layer, so errors.py and safe_http.py can both use it.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# Any URL in a message: the owner's own source (shown without credentials, query or fragment, which
# is where presigned signatures and tokens live) or one of ours (a database URL).
_URL = re.compile(r"""\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'"<>]+""")
# libpq's "connection to server at "10.0.3.7" (10.0.3.7), port 5432 failed" and "... on socket "/tmp/.s.PGSQL.5432"".
_SERVER = re.compile(r"""server (?:at "[^"]*"(?: \([^)]*\))?, port \d+|on socket "[^"]*")""")
# libpq / Postgres name the role: 'password authentication failed for user "busline_load"'.
_ROLE = re.compile(r"""\b(user|role) "[^"]*\"""")
# A connection string's secrets: host=… user=… password=…
_CONNINFO = re.compile(r"""\b(host|hostaddr|user|password|passfile|sslkey|sslpassword)=(?:'[^']*'|\S+)""")
_STACK_START = "Traceback (most recent call last)"


def display_url(url: str) -> str:
    """`url` as errors show it: scheme, host, port and path; never credentials, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return urlunsplit((parts.scheme.lower(), host if port is None else f"{host}:{port}", parts.path, "", ""))


_SOURCE_SCHEMES = ("s3", "http", "https")


def _display_url_in_text(match: re.Match[str]) -> str:
    found = match.group(0)
    url = found.rstrip(".,;:)")  # the sentence's punctuation, not the URL's
    return _shown_url(url) + found[len(url) :]


def _shown_url(url: str) -> str:
    scheme = url.split(":", 1)[0].lower()
    if scheme not in _SOURCE_SCHEMES:  # a database or other service of the stack: not the owner's
        return f"{scheme}://<hidden>"
    try:
        return display_url(url)
    except ValueError:  # not a URL after all (an unbalanced [ in the host)
        return "<url>"


def public_message(text: str) -> str:
    """`text` with every URL shown by `display_url`, database servers and roles unnamed, connection
    strings' secrets removed and any stack cut off."""
    text = text.split(_STACK_START, 1)[0].rstrip()
    text = _URL.sub(_display_url_in_text, text)
    text = _SERVER.sub("server", text)
    text = _ROLE.sub(r"\1 <hidden>", text)
    return _CONNINFO.sub(r"\1=<hidden>", text)


__all__ = ["display_url", "public_message"]
