"""safe_http.py, the SSRF rule: which addresses are refused, that the socket goes to the address that was
checked, that every redirect hop is checked again, and that failures read alike.

No test here leaves loopback: names are answered by a stub resolver (a name it does not know is "no
such host"), IP literals by the system's numeric parser (AI_NUMERICHOST, no DNS), and a guard fails the
test if anything tries to connect beyond loopback.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from busline_core.errors import SourceUnreadable
from busline_core.safe_http import (
    DOWNGRADE_REFUSED,
    PLAIN_HTTP_LOOPBACK_ONLY,
    PLAIN_HTTP_REFUSED,
    REDIRECT_NOT_HTTP,
    REDIRECT_WITHOUT_LOCATION,
    TOO_MANY_REDIRECTS,
    UNREACHABLE,
    address_problem,
    display_url,
    open_url,
    redirect_target,
    url_refusal,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_REAL_GETADDRINFO = socket.getaddrinfo
_REAL_CONNECT = socket.socket.connect


# --- fixtures: a stub resolver, a loopback-only guard, loopback servers -----------------------------


@dataclass
class StubResolver:
    """getaddrinfo for this test: IP literals parsed as the system parses them, names from `answers`
    (one list per successive lookup, the last one repeating), anything else "no such host"."""

    answers: dict[str, list[list[str]]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def __call__(self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:
        self.calls.append(host)
        try:
            return _REAL_GETADDRINFO(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        except socket.gaierror:
            if flags & socket.AI_NUMERICHOST:
                raise
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        lookups = self.answers[host]
        answer = lookups[min(self.calls.count(host), len(lookups)) - 1]
        infos: list[tuple[Any, ...]] = []
        for text in answer:
            if ipaddress.ip_address(text).version == 6:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (text, port, 0, 0)))
            else:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (text, port)))
        return infos


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> StubResolver:
    stub = StubResolver()
    monkeypatch.setattr(socket, "getaddrinfo", stub)
    return stub


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def guarded(sock: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and not ipaddress.ip_address(address[0]).is_loopback:
            raise AssertionError(f"a connection to {address[0]} was attempted")
        _REAL_CONNECT(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@dataclass
class Seen:
    """What a test server received: one (path, Host header) per request."""

    requests: list[tuple[str, str]] = field(default_factory=list)


Route = tuple[int, dict[str, str], bytes]


def _handler(routes: Callable[[str], Route], seen: Seen) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.requests.append((self.path, self.headers.get("Host", "")))
            status, headers, body = routes(self.path)
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def _serve(
    handler: type[http.server.BaseHTTPRequestHandler] | Callable[[str], Route], tls: ssl.SSLContext | None = None
) -> Iterator[tuple[int, Seen]]:
    seen = Seen()
    if not isinstance(handler, type):
        handler = _handler(handler, seen)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _routes(path: str) -> Route:
    """/data.csv: a file; /to/<url-path>: a redirect to the rest of the path; /chain/<n>: n redirects
    before the file; /loop: a redirect to itself; /bare: a redirect without a Location."""
    if path == "/data.csv":
        return 200, {"Content-Type": "text/csv"}, b"id\n1\n"
    if path.startswith("/to/"):
        return 302, {"Location": path[len("/to/"):]}, b""
    if path.startswith("/chain/"):
        left = int(path.rsplit("/", 1)[1])
        return 302, {"Location": f"/chain/{left - 1}" if left else "/data.csv"}, b""
    if path == "/loop":
        return 301, {"Location": "/loop"}, b""
    if path == "/bare":
        return 302, {}, b""
    return 404, {}, b"no"


@pytest.fixture
def server() -> Iterator[tuple[int, Seen]]:
    with _serve(_routes) as served:
        yield served


def _read(url: str, *, allow_loopback_http: bool, **options: Any) -> bytes:
    with open_url(url, allow_loopback_http=allow_loopback_http, **options) as stream:
        return stream.read()


def _refusal(url: str, *, allow_loopback_http: bool, **options: Any) -> SourceUnreadable:
    with pytest.raises(SourceUnreadable) as caught:
        _read(url, allow_loopback_http=allow_loopback_http, **options)
    return caught.value


# --- which addresses are refused ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "loopback"),
        ("127.9.9.9", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.0.1", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fc00::1", "unique-local"),
        ("fec0::1", "site-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "IPv4-mapped IPv6"),
        ("::ffff:8.8.8.8", "IPv4-mapped IPv6"),
        ("::127.0.0.1", "IPv4-compatible IPv6"),
        ("2002:7f00:1::", "loopback (carried in IPv6)"),  # 6to4 of 127.0.0.1
        ("2002:a00:1::", "private (carried in IPv6)"),  # 6to4 of 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "private (carried in IPv6)"),  # Teredo, client 192.0.2.45
        ("64:ff9b::a9fe:a9fe", "cloud metadata (carried in IPv6)"),  # NAT64 of 169.254.169.254
        ("192.0.2.1", "private"),  # documentation
        ("198.18.0.1", "private"),  # benchmarking
        ("240.0.0.1", "private"),  # reserved, is_private in Python 3.11
        ("255.255.255.255", "private"),
    ],
)
def test_non_public_addresses_are_refused_with_their_kind(address: str, problem: str) -> None:
    assert address_problem(ipaddress.ip_address(address), allow_loopback=False) == problem


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:2800:220:1:248:1893:25c8:1946", "2002:5db8:d822::1"])
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address), allow_loopback=False) is None


def test_allowing_loopback_allows_loopback_and_nothing_else() -> None:
    # Given the local cloud's setting
    checks = {text: address_problem(ipaddress.ip_address(text), allow_loopback=True) for text in (
        "127.0.0.1", "127.5.6.7", "::1", "10.0.0.1", "169.254.169.254", "::ffff:127.0.0.1", "2002:7f00:1::")}
    # Then loopback passes, wrapped loopback and every other kind are still refused
    assert checks == {
        "127.0.0.1": None, "127.5.6.7": None, "::1": None, "10.0.0.1": "private",
        "169.254.169.254": "cloud metadata", "::ffff:127.0.0.1": "IPv4-mapped IPv6",
        "2002:7f00:1::": "loopback (carried in IPv6)",
    }


# --- at submit: what can be refused without DNS --------------------------------------------------

PUBLIC_ONLY = "Busline reads only from public hosts"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://example.com/data.csv", None),
        ("https://93.184.216.34/data.csv", None),
        ("http://example.com/data.csv", PLAIN_HTTP_REFUSED),
        ("http://127.0.0.1:8000/data.csv", PLAIN_HTTP_REFUSED),
        ("https://user:secret@example.com/data.csv", "a source URL must not carry credentials (user:password@)"),
        ("https://127.0.0.1/data.csv", f"the address is loopback; {PUBLIC_ONLY}"),
        ("https://localhost/data.csv", f"the host is loopback; {PUBLIC_ONLY}"),
        ("https://api.localhost./data.csv", f"the host is loopback; {PUBLIC_ONLY}"),
        ("https://0.0.0.0/data.csv", f"the address is unspecified; {PUBLIC_ONLY}"),
        ("https://[::1]/data.csv", f"the address is loopback; {PUBLIC_ONLY}"),
        ("https://[::ffff:127.0.0.1]/data.csv", f"the address is IPv4-mapped IPv6; {PUBLIC_ONLY}"),
        ("https://[::127.0.0.1]/data.csv", f"the address is IPv4-compatible IPv6; {PUBLIC_ONLY}"),
        ("https://10.0.0.8/data.csv", f"the address is private; {PUBLIC_ONLY}"),
        ("https://172.16.5.4/data.csv", f"the address is private; {PUBLIC_ONLY}"),
        ("https://192.168.1.1/data.csv", f"the address is private; {PUBLIC_ONLY}"),
        ("https://100.64.0.1/data.csv", f"the address is carrier-grade NAT; {PUBLIC_ONLY}"),
        ("https://169.254.169.254/latest/meta-data/", f"the address is cloud metadata; {PUBLIC_ONLY}"),
        ("https://[fd00:ec2::254]/latest/meta-data/", f"the address is cloud metadata; {PUBLIC_ONLY}"),
        ("https://[fc00::1]/data.csv", f"the address is unique-local; {PUBLIC_ONLY}"),
        ("https://224.0.0.1/data.csv", f"the address is multicast; {PUBLIC_ONLY}"),
        ("https://2130706433/data.csv", f"the address is loopback; {PUBLIC_ONLY}"),  # decimal
        ("https://0x7f.1/data.csv", f"the address is loopback; {PUBLIC_ONLY}"),  # hex, short form
        ("https://017700000001/data.csv", f"the address is loopback; {PUBLIC_ONLY}"),  # octal
        ("https://0251.0376.0251.0376/data.csv", f"the address is cloud metadata; {PUBLIC_ONLY}"),  # octal metadata
    ],
)
def test_submit_time_refusals_on_a_deployed_stack(url: str, reason: str | None) -> None:
    assert url_refusal(url, allow_loopback_http=False) == reason


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8000/data.csv", None),
        ("http://localhost:8000/data.csv", None),
        ("http://[::1]:8000/data.csv", None),
        ("https://127.0.0.1:8443/data.csv", None),
        ("https://example.com/data.csv", None),
        ("http://example.com/data.csv", PLAIN_HTTP_LOOPBACK_ONLY),
        ("http://93.184.216.34/data.csv", PLAIN_HTTP_LOOPBACK_ONLY),
        ("http://10.0.0.1/data.csv", f"the address is private; {PUBLIC_ONLY}"),
        ("http://[::ffff:127.0.0.1]:8000/data.csv", f"the address is IPv4-mapped IPv6; {PUBLIC_ONLY}"),
    ],
)
def test_submit_time_refusals_on_the_local_cloud(url: str, reason: str | None) -> None:
    assert url_refusal(url, allow_loopback_http=True) == reason


def test_errors_show_the_url_without_credentials_query_or_fragment() -> None:
    assert display_url("HTTPS://user:pw@Data.Example.com:8443/a/b.csv?token=s3cret#frag") == (
        "https://data.example.com:8443/a/b.csv"
    )
    assert display_url("http://[::1]:80/x") == "http://[::1]:80/x"


# --- at read: every resolved address is checked before any connection -----------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1", "0.0.0.0", "[::1]", "[::ffff:127.0.0.1]", "[::127.0.0.1]", "10.0.0.1", "172.16.0.1",
        "192.168.0.1", "100.64.0.1", "169.254.169.254", "[fd00:ec2::254]", "[fc00::1]", "224.0.0.1",
        "2130706433", "0x7f.1", "017700000001", "[2002:7f00:1::]",
        "loopback.test", "mixed.test", "rebinding-metadata.test", "nxdomain.test",
    ],
)
def test_hostile_hosts_are_refused_before_any_connection_and_read_alike(
    host: str, resolver: StubResolver, server: tuple[int, Seen]
) -> None:
    # Given names that resolve to loopback, to a public and a private address, to the metadata service,
    # or to nothing; and a server listening on 127.0.0.1 at the port every URL names
    port, seen = server
    resolver.answers.update({
        "loopback.test": [["127.0.0.1"]],
        "mixed.test": [["93.184.216.34", "10.0.0.1"]],
        "rebinding-metadata.test": [["93.184.216.34", "169.254.169.254"]],
    })
    url = f"https://{host}:{port}/data.csv?token=s3cret"
    # When a deployed stack reads the URL
    error = _refusal(url, allow_loopback_http=False)
    # Then it is refused with the one message, the URL shown without its query, and nothing connected
    assert error.message == f"source https://{host}:{port}/data.csv is unreadable: {UNREACHABLE}"
    assert seen.requests == []


def test_plain_http_is_refused_on_a_deployed_stack_without_a_lookup(resolver: StubResolver) -> None:
    error = _refusal("http://example.com/data.csv", allow_loopback_http=False)
    assert error.reason == PLAIN_HTTP_REFUSED
    assert resolver.calls == []


def test_plain_http_on_the_local_cloud_reaches_loopback_only(resolver: StubResolver, server: tuple[int, Seen]) -> None:
    # Given the local cloud's setting and a name that resolves to a public address
    port, seen = server
    resolver.answers["public.test"] = [["93.184.216.34"]]
    # When it is read over plain http / Then it is refused like any unreachable host
    assert _refusal(f"http://public.test:{port}/data.csv", allow_loopback_http=True).reason == UNREACHABLE
    # while the loopback server's file is read
    assert _read(f"http://127.0.0.1:{port}/data.csv", allow_loopback_http=True) == b"id\n1\n"
    assert seen.requests == [("/data.csv", f"127.0.0.1:{port}")]


# --- the socket goes to the checked address; one lookup per hop ------------------------------------


def test_the_connection_goes_to_the_address_that_was_checked(resolver: StubResolver, server: tuple[int, Seen]) -> None:
    # Given a name whose first answer is loopback and every later answer a private address (rebinding)
    port, seen = server
    resolver.answers["data.test"] = [["127.0.0.1"], ["10.0.0.9"]]
    # When the local cloud reads it
    body = _read(f"http://data.test:{port}/data.csv", allow_loopback_http=True)
    # Then it was resolved once, the bytes came from 127.0.0.1 (the loopback guard refuses 10.0.0.9), and
    # the request named the host, not the address
    assert body == b"id\n1\n"
    assert resolver.calls == ["data.test"]
    assert seen.requests == [("/data.csv", f"data.test:{port}")]


def test_each_redirect_hop_is_resolved_once(resolver: StubResolver, server: tuple[int, Seen]) -> None:
    # Given a redirect from a loopback address to a name that resolves to it
    port, seen = server
    resolver.answers["data.test"] = [["127.0.0.1"], ["10.0.0.9"]]
    # When it is followed
    body = _read(f"http://127.0.0.1:{port}/to/http://data.test:{port}/data.csv", allow_loopback_http=True)
    # Then each hop was looked up exactly once
    assert body == b"id\n1\n"
    assert resolver.calls == ["127.0.0.1", "data.test"]
    assert seen.requests == [(f"/to/http://data.test:{port}/data.csv", f"127.0.0.1:{port}"), ("/data.csv", f"data.test:{port}")]


# --- redirects ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "location",
    [
        "http://internal.test/secret",  # a name that resolves to a private address
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::ffff:127.0.0.1]:{port}/data.csv",  # loopback in disguise: refused even on the local cloud
        "http://100.64.0.1/",
    ],
)
def test_a_redirect_to_a_refused_address_is_not_followed(
    location: str, resolver: StubResolver, server: tuple[int, Seen]
) -> None:
    # Given an allowed server that redirects to a refused address
    port, seen = server
    resolver.answers["internal.test"] = [["10.0.0.7"]]
    start = f"http://127.0.0.1:{port}/to/{location.format(port=port)}"
    # When the local cloud reads it
    error = _refusal(start, allow_loopback_http=True)
    # Then it fails as an unreachable host named by the first URL, after the one request to the first hop
    assert error.message == f"source http://127.0.0.1:{port}/to/{location.format(port=port)} is unreadable: {UNREACHABLE}"
    assert len(seen.requests) == 1


def test_five_redirects_are_followed_and_a_sixth_is_not(resolver: StubResolver, server: tuple[int, Seen]) -> None:
    port, seen = server
    # Given a chain of 5 redirects / Then the file is read after 6 requests
    assert _read(f"http://127.0.0.1:{port}/chain/4", allow_loopback_http=True) == b"id\n1\n"
    assert len(seen.requests) == 6
    # Given a chain of 6 / Then it fails after 6 requests, the 7th never sent
    seen.requests.clear()
    assert _refusal(f"http://127.0.0.1:{port}/chain/5", allow_loopback_http=True).reason == TOO_MANY_REDIRECTS
    assert TOO_MANY_REDIRECTS == "more than 5 redirects"
    assert len(seen.requests) == 6


def test_a_redirect_loop_and_a_redirect_without_location_fail_the_source(
    resolver: StubResolver, server: tuple[int, Seen]
) -> None:
    port, _ = server
    assert _refusal(f"http://127.0.0.1:{port}/loop", allow_loopback_http=True).reason == "more than 5 redirects"
    assert _refusal(f"http://127.0.0.1:{port}/bare", allow_loopback_http=True).reason == REDIRECT_WITHOUT_LOCATION


@pytest.mark.parametrize(
    ("current", "location", "expected"),
    [
        ("https://a.test/x/y.csv", "/z.csv", "https://a.test/z.csv"),
        ("https://a.test/x/y.csv", "z.csv", "https://a.test/x/z.csv"),
        ("https://a.test/x", "//b.test/z", "https://b.test/z"),
        ("http://127.0.0.1/x", "https://b.test/z", "https://b.test/z"),  # an upgrade is fine
        ("https://a.test/x", "http://a.test/x", DOWNGRADE_REFUSED),
        ("https://a.test/x", "http://b.test/z", DOWNGRADE_REFUSED),
        ("https://a.test/x", "file:///etc/passwd", REDIRECT_NOT_HTTP),
        ("https://a.test/x", "gopher://a.test:25/", REDIRECT_NOT_HTTP),
        ("https://a.test/x", "   ", REDIRECT_WITHOUT_LOCATION),
        ("https://a.test/x", None, REDIRECT_WITHOUT_LOCATION),
    ],
)
def test_redirect_hops(current: str, location: str | None, expected: str) -> None:
    try:
        assert redirect_target(current, location, "https://a.test/x") == expected
    except SourceUnreadable as error:
        assert error.reason == expected


# --- a closed port, an open one, a silent one: the same text ---------------------------------------


def test_refused_closed_silent_and_non_http_ports_read_the_same(resolver: StubResolver) -> None:
    # Given a port that is closed, one that accepts and never answers, one that speaks another protocol
    with socket.create_server(("127.0.0.1", 0)) as probe:
        closed = probe.getsockname()[1]
    silent = socket.create_server(("127.0.0.1", 0))
    chatty = socket.create_server(("127.0.0.1", 0))

    def banner() -> None:
        connection, _ = chatty.accept()
        with connection:
            connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    talker = threading.Thread(target=banner, daemon=True)
    talker.start()
    try:
        urls = {
            "refused address": ("https://10.0.0.1/data.csv", False),
            "closed port": (f"http://127.0.0.1:{closed}/data.csv", True),
            "silent port": (f"http://127.0.0.1:{silent.getsockname()[1]}/data.csv", True),
            "not http": (f"http://127.0.0.1:{chatty.getsockname()[1]}/data.csv", True),
            "no such host": ("https://nxdomain.test/data.csv", False),
        }
        # When each is read
        reasons = {what: _refusal(url, allow_loopback_http=flag, timeout=0.5).reason for what, (url, flag) in urls.items()}
    finally:
        talker.join(timeout=5)
        silent.close()
        chatty.close()
    # Then every one says the same, and nothing about ports or addresses
    assert reasons == dict.fromkeys(urls, "the host is not reachable from Busline")


def test_an_http_error_names_the_standard_status_not_the_servers_words(resolver: StubResolver) -> None:
    # Given a server whose 404 carries its own reason phrase
    class Chatty(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404, "internal host db-7.corp is down")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with _serve(Chatty) as (port, _):
        # When it is read / Then only the standard phrase is shown
        assert _refusal(f"http://127.0.0.1:{port}/x.csv", allow_loopback_http=True).reason == "HTTP 404 Not Found"


# --- https: TLS names the host while the socket goes to the checked address ------------------------


@dataclass(frozen=True)
class Pki:
    client: ssl.SSLContext  # trusts only the test CA
    server: ssl.SSLContext  # serves a certificate for data.test


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder: Path = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "busline test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(1).not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
        ), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "data.test")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("data.test")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (folder / "leaf.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    client = ssl.create_default_context(cafile=str(folder / "ca.pem"))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "leaf.pem", folder / "leaf.key")
    return Pki(client=client, server=server)


@pytest.fixture
def tls_server(pki: Pki) -> Iterator[tuple[int, Seen]]:
    with _serve(_routes, tls=pki.server) as served:
        yield served


def test_https_verifies_the_name_while_connecting_to_the_checked_address(
    resolver: StubResolver, pki: Pki, tls_server: tuple[int, Seen]
) -> None:
    # Given data.test and other.test both resolving to the TLS server on loopback, whose certificate
    # names data.test only
    port, seen = tls_server
    resolver.answers.update({"data.test": [["127.0.0.1"]], "other.test": [["127.0.0.1"]]})
    # When both are read on the local cloud (loopback allowed)
    body = _read(f"https://data.test:{port}/data.csv", allow_loopback_http=True, context=pki.client)
    other = _refusal(f"https://other.test:{port}/data.csv", allow_loopback_http=True, context=pki.client)
    # Then the name the certificate holds is read, the other fails like any unreachable host
    assert body == b"id\n1\n"
    assert other.reason == UNREACHABLE
    assert seen.requests == [("/data.csv", f"data.test:{port}")]
    assert resolver.calls == ["data.test", "other.test"]


def test_https_never_redirects_down_to_plain_http(
    resolver: StubResolver, pki: Pki, tls_server: tuple[int, Seen], server: tuple[int, Seen]
) -> None:
    # Given an https source that redirects to plain http on loopback
    port, seen = tls_server
    plain_port, plain_seen = server
    resolver.answers["data.test"] = [["127.0.0.1"]]
    # When the local cloud reads it
    url = f"https://data.test:{port}/to/http://127.0.0.1:{plain_port}/data.csv"
    error = _refusal(url, allow_loopback_http=True, context=pki.client)
    # Then the downgrade is refused and the plain server never asked
    assert error.reason == "redirected from https:// to plain http://, which Busline does not follow"
    assert len(seen.requests) == 1
    assert plain_seen.requests == []
