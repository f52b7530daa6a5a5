"""The local cloud's moto keeps connections open, as AWS's endpoints do, without one request's bytes ever
reaching the next."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import boto3
import pytest

from busline.localcloud.moto_server import KeepAliveMotoServer
from busline.localcloud.testing import moto_server

BUCKET = "keep-alive-bucket"


@pytest.fixture
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.create_bucket(Bucket=BUCKET)
        yield url


def _connection(endpoint: str) -> http.client.HTTPConnection:
    parts = urlsplit(endpoint)
    return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)


def _request(
    connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None, **headers: str
) -> tuple[int, bytes, str | None]:
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, response.read(), response.getheader("Connection")


def test_one_connection_carries_a_clients_calls(endpoint: str) -> None:
    # Given one HTTP/1.1 connection to moto
    connection = _connection(endpoint)
    # When it puts an object, lists the bucket and lists the buckets
    put = _request(connection, "PUT", f"/{BUCKET}/first.txt", b"first body")
    opened = connection.sock
    listed = _request(connection, "GET", f"/{BUCKET}?list-type=2")
    buckets = _request(connection, "GET", "/")
    # Then all three are answered on that same socket, none asking to close it
    assert (put[0], put[2]) == (200, None)
    assert (listed[0], listed[2]) == (200, None) and b"<KeyCount>1</KeyCount>" in listed[1]
    assert b"<Key>first.txt</Key>" in listed[1] and b"<Size>10</Size>" in listed[1]
    assert (buckets[0], buckets[2]) == (200, None) and f"<Name>{BUCKET}</Name>".encode() in buckets[1]
    assert connection.sock is opened
    connection.close()


def test_a_body_moto_does_not_read_never_reaches_the_next_request(endpoint: str) -> None:
    # Given a request with a body moto ignores (listing the buckets), on a kept connection
    connection = _connection(endpoint)
    ignored = b"GET /not-a-request HTTP/1.1\r\n\r\n" * 1000
    status, listing, _ = _request(connection, "GET", "/", ignored)
    # When the next request follows on the same connection
    after = _request(connection, "GET", f"/{BUCKET}?list-type=2")
    # Then each is answered for itself: the ignored bytes were read with their request, not parsed as another
    assert status == 200 and f"<Name>{BUCKET}</Name>".encode() in listing
    assert after[0] == 200 and f"<Name>{BUCKET}</Name>".encode() in after[1]
    connection.close()


def test_a_chunked_body_is_read_whole_and_the_connection_goes_on(endpoint: str) -> None:
    # Given an object sent in three chunks (no Content-Length)
    connection = _connection(endpoint)
    pieces = [b"a" * 70_000, b"b" * 5, b"c" * 1_000]
    connection.request("PUT", f"/{BUCKET}/chunked.bin", body=iter(pieces), encode_chunked=True)
    put = connection.getresponse()
    put.read()
    # When the bucket is listed on the same connection, and the object read back
    status, listing, _ = _request(connection, "GET", f"/{BUCKET}?list-type=2")
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    body = s3.get_object(Bucket=BUCKET, Key="chunked.bin")["Body"].read()
    # Then the connection answered the listing, and the object is those 71,005 bytes
    assert (put.status, status) == (200, 200) and b"<Key>chunked.bin</Key>" in listing
    assert (len(body), body) == (71_005, b"".join(pieces))
    connection.close()


def test_a_client_that_asks_to_close_is_answered_and_closed(endpoint: str) -> None:
    # Given a request that asks for "Connection: close"
    connection = _connection(endpoint)
    status, _, said = _request(connection, "GET", "/", Connection="close")
    # Then the answer says so, and the server ends the connection
    assert (status, said) == (200, "close")
    assert connection.sock is None  # http.client closed it, as the answer told it to
    connection.close()


def test_stop_ends_idle_kept_connections_and_frees_the_port() -> None:
    # Given a server with one idle kept connection
    server = KeepAliveMotoServer("127.0.0.1", 0)
    server.start()
    port = server.bound_port
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)
    idle.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    answered = idle.recv(65536)
    # When the server stops
    server.stop()
    # Then the idle connection is ended (the next read finds its end, not a hang) and the port can be bound again
    assert answered.startswith(b"HTTP/1.1 200")
    rest = b""
    while chunk := idle.recv(65536):
        rest += chunk
    assert chunk == b""
    idle.close()
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
