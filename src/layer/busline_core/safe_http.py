"""Which http(s) URLs a task may fetch, and the one way they are fetched: the SSRF rule, in one place.

A source URL is written by a user but fetched from inside the stack, next to the instance metadata
service, the Lambda runtime API on loopback and whatever the VPC holds. So:

- The host is resolved once, and every address it resolves to must be public: loopback, private,
  link-local, carrier-grade NAT, unique-local, site-local, multicast, reserved, unspecified and cloud
  metadata addresses are refused, IPv4-mapped and IPv4-compatible IPv6 addresses whatever they wrap, and
  6to4, Teredo and NAT64 addresses by the IPv4 address they carry. One bad answer refuses the host: a
  name mixing public and private answers is how DNS rebinding starts.
- The connection goes to an address that was checked, never to the name: a second lookup could be
  answered differently. TLS (SNI and the certificate check) and the Host header still use the name.
- Redirects are followed, at most MAX_REDIRECTS of them, each target resolved and checked like the
  first URL, and never from https:// down to http://.
- Plain http:// only where the stack enables loopback sources (template parameter
  AllowLoopbackHttpSources, set by the local cloud), and then only to loopback addresses; with that
  setting loopback is allowed over https:// too, every other refused range stays refused.

Everything that fails before an HTTP status arrives (a refused address, no such host, a closed or
filtered port, a TLS failure, a server that does not speak HTTP) reads the same to the user, so a task
cannot tell an open port from a closed one; the details go to the log, which carries the task id. A
status is only ever seen from an address that passed the check. Proxy variables (HTTPS_PROXY) are
ignored on purpose: a proxy would resolve the name itself, after the check.

`url_refusal` is the part of the rule that needs no DNS; the API applies it at submit time
(source_access.py) so a spec naming a private address or a plain http:// URL is a 400 there.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import BinaryIO, NoReturn
from urllib.parse import urljoin, urlsplit

from aws_lambda_powertools import Logger

from .errors import SourceUnreadable
from .redaction import display_url

logger = Logger(child=True)

TIMEOUT_S = 30
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

UNREACHABLE = "the host is not reachable from Busline"
PLAIN_HTTP_REFUSED = "plain http:// is not allowed on this stack; use https://"
PLAIN_HTTP_LOOPBACK_ONLY = "plain http:// is only allowed to loopback hosts; use https://"
CREDENTIALS_REFUSED = "a source URL must not carry credentials (user:password@)"
TOO_MANY_REDIRECTS = f"more than {MAX_REDIRECTS} redirects"
DOWNGRADE_REFUSED = "redirected from https:// to plain http://, which Busline does not follow"
REDIRECT_NOT_HTTP = "redirected to a URL that is not http(s)://, which Busline does not follow"
REDIRECT_WITHOUT_LOCATION = "a redirect without a Location"
NOT_A_URL = "not a valid http(s) URL"
PUBLIC_ONLY = "Busline reads only from public hosts"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The instance metadata service (IPv4 and the Nitro IPv6 endpoint). Both sit in refused ranges anyway;
# naming them makes the log say what was tried.
_METADATA = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
_CGNAT = ipaddress.ip_network("100.64.0.0/10")  # not is_private in Python 3.11, yet never a public host
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # ::a.b.c.d is is_global in Python 3.11
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOOPBACK_NAMES = ("localhost",)  # and every name under .localhost (RFC 6761)


def address_problem(address: IPAddress, *, allow_loopback: bool) -> str | None:
    """What kind of address Busline will not connect to `address` is (for the log), or None."""
    if address in _METADATA:
        return "cloud metadata"
    if isinstance(address, ipaddress.IPv6Address):
        if address in _IPV4_MAPPED:
            return "IPv4-mapped IPv6"
        if address in _IPV4_COMPATIBLE and address not in (ipaddress.IPv6Address("::"), ipaddress.IPv6Address("::1")):
            return "IPv4-compatible IPv6"
        carried = _carried_ipv4(address)
        if carried is not None:
            problem = address_problem(carried, allow_loopback=False)
            if problem is not None:
                return f"{problem} (carried in IPv6)"
    if address.is_loopback:
        return None if allow_loopback else "loopback"
    checks: tuple[tuple[bool, str], ...] = (
        (address.is_unspecified, "unspecified"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address in _CGNAT, "carrier-grade NAT"),
        (address in _UNIQUE_LOCAL, "unique-local"),
        (isinstance(address, ipaddress.IPv6Address) and address.is_site_local, "site-local"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
        (not address.is_global, "not public"),
    )
    return next((label for refused, label in checks if refused), None)


def _carried_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client; the server is a public relay
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def url_refusal(url: str, *, allow_loopback_http: bool) -> str | None:
    """Why `url` can never be fetched on this stack, judged without DNS (a name is checked when it is
    fetched); None when it may be tried."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return NOT_A_URL
    if parts.username is not None or parts.password is not None:
        return CREDENTIALS_REFUSED
    if scheme == "http" and not allow_loopback_http:
        return PLAIN_HTTP_REFUSED
    host = parts.hostname.rstrip(".")
    literal = _literal_addresses(host)
    if literal is None:
        loopback = host == "localhost" or host.endswith(".localhost")
        if scheme == "http" and not loopback:
            return PLAIN_HTTP_LOOPBACK_ONLY
        if loopback and not allow_loopback_http:
            return f"the host is loopback; {PUBLIC_ONLY}"
        return None
    for address in literal:
        problem = address_problem(address, allow_loopback=allow_loopback_http)
        if problem is not None:
            return f"the address is {problem}; {PUBLIC_ONLY}"
        if scheme == "http" and not address.is_loopback:
            return PLAIN_HTTP_LOOPBACK_ONLY
    return None


def _literal_addresses(host: str) -> list[IPAddress] | None:
    """The addresses `host` spells if it is an IP literal in any form the resolver accepts (2130706433,
    0x7f.1, 017700000001, ::ffff:127.0.0.1 …), None for a name. No DNS: AI_NUMERICHOST."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError):
        return None
    return [ipaddress.ip_address(info[4][0]) for info in infos]


# --- fetching ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """One checked hop: what TLS and the Host header name, and where the socket goes."""

    scheme: str
    host: str
    port: int
    request_target: str
    addresses: tuple[tuple[socket.AddressFamily, tuple[object, ...]], ...]


def _connect(addresses: tuple[tuple[socket.AddressFamily, tuple[object, ...]], ...], timeout: float) -> socket.socket:
    error: OSError = OSError("no address")
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            return sock
        except OSError as failure:
            sock.close()
            error = failure
    raise error


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, target: _Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._addresses = target.addresses
        self._timeout_s = timeout

    def connect(self) -> None:
        self.sock = _connect(self._addresses, self._timeout_s)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, target: _Target, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=context)
        self._addresses = target.addresses
        self._timeout_s = timeout
        self._tls = context

    def connect(self) -> None:
        sock = _connect(self._addresses, self._timeout_s)
        try:
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


@contextmanager
def open_url(
    url: str, *, allow_loopback_http: bool, timeout: float = TIMEOUT_S, context: ssl.SSLContext | None = None
) -> Iterator[BinaryIO]:
    """GET `url` under the rule above; yields the body of the final 2xx response as a binary stream.

    Raises SourceUnreadable naming display_url(url). `context` replaces the system trust store (tests
    pass their own CA). The stream is unbounded: a cap on the bytes read belongs to whoever reads it.
    """
    shown = display_url(url)
    tls = context or ssl.create_default_context()
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        target = _checked_target(current, shown, allow_loopback_http)
        connection: http.client.HTTPConnection = (
            _PinnedHTTPSConnection(target, timeout, tls) if target.scheme == "https" else _PinnedHTTPConnection(target, timeout)
        )
        try:
            response = _get(connection, target, shown)
            if response.status in REDIRECT_STATUSES:
                current = redirect_target(current, response.getheader("Location"), shown)
                continue
            if not 200 <= response.status < 300:
                raise SourceUnreadable(shown, _status_text(response.status))
            with response:
                yield response  # type: ignore[misc]
            return
        finally:
            connection.close()
    raise SourceUnreadable(shown, TOO_MANY_REDIRECTS)


def redirect_target(current: str, location: str | None, shown: str) -> str:
    """The URL a redirect from `current` leads to, if Busline follows it (its address is checked like
    any URL's when it is fetched); raises SourceUnreadable otherwise."""
    if not location or not location.strip():
        raise SourceUnreadable(shown, REDIRECT_WITHOUT_LOCATION)
    target = urljoin(current, location.strip())
    scheme = urlsplit(target).scheme.lower()
    if scheme not in ("http", "https"):
        raise SourceUnreadable(shown, REDIRECT_NOT_HTTP)
    if urlsplit(current).scheme.lower() == "https" and scheme == "http":
        raise SourceUnreadable(shown, DOWNGRADE_REFUSED)
    return target


def _checked_target(url: str, shown: str, allow_loopback_http: bool) -> _Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    if scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise SourceUnreadable(shown, NOT_A_URL)
    if scheme == "http" and not allow_loopback_http:
        raise SourceUnreadable(shown, PLAIN_HTTP_REFUSED)
    host = parts.hostname
    port = port or (443 if scheme == "https" else 80)
    try:
        host = host if host.isascii() else host.encode("idna").decode("ascii")
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        _refused(shown, host, None, f"no address: {error}")
    if not infos:
        _refused(shown, host, None, "no address")
    addresses: list[tuple[socket.AddressFamily, tuple[object, ...]]] = []
    for family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        problem = address_problem(address, allow_loopback=allow_loopback_http)
        if problem is None and scheme == "http" and not address.is_loopback:
            problem = "not loopback (plain http)"
        if problem is not None:
            _refused(shown, host, str(address), problem)
        if (family, sockaddr) not in addresses:
            addresses.append((family, tuple(sockaddr)))
    request_target = parts.path or "/"
    if parts.query:
        request_target += f"?{parts.query}"
    return _Target(scheme, host, port, request_target, tuple(addresses))


def _refused(shown: str, host: str, address: str | None, problem: str) -> NoReturn:
    logger.warning("source host refused", extra={"url": shown, "host": host, "address": address, "problem": problem})
    raise SourceUnreadable(shown, UNREACHABLE)


def _get(connection: http.client.HTTPConnection, target: _Target, shown: str) -> http.client.HTTPResponse:
    try:
        # identity: the body is the file as named (.gz is decompressed by suffix, not by the transport);
        # some CDNs refuse a request without a User-Agent
        headers = {"Accept-Encoding": "identity", "Connection": "close", "User-Agent": "Busline"}
        connection.request("GET", target.request_target, headers=headers)
        return connection.getresponse()
    except (OSError, http.client.HTTPException) as error:  # first: a certificate error is a ValueError too
        logger.warning(
            "source host unreachable",
            extra={"url": shown, "host": target.host, "addresses": [str(a[1][0]) for a in target.addresses],
                   "error": repr(error)},
        )
        raise SourceUnreadable(shown, UNREACHABLE) from error
    except ValueError as error:  # http.client's InvalidURL, a path that is not ASCII
        raise SourceUnreadable(shown, NOT_A_URL) from error


def _status_text(status: int) -> str:
    # the standard phrase, not the server's: a reason line is text an unknown server chose
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


__all__ = [
    "MAX_REDIRECTS",
    "UNREACHABLE",
    "address_problem",
    "display_url",
    "open_url",
    "redirect_target",
    "url_refusal",
]
