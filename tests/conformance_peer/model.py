"""What a scenario is, and the boto3 side every scenario shares.

A scenario is a plain function over an `Aws` (boto3 clients of one endpoint) that returns an observation:
a small JSON document of what the endpoint did. The same function runs against every peer; what AWS
documents is written down next to it as the observation AWS would give, with the page that says so.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

Observation = dict[str, Any]

REGION = "us-east-1"
# Emulators accept any key; these say so and never look like a real one.
FAKE_ACCESS_KEY = FAKE_SECRET_KEY = "testing"


@dataclass
class Aws:
    """boto3 clients of one peer's AWS endpoint; `outputs` are the fixture stack's outputs there, if any."""

    peer: str
    endpoint: str
    region: str = REGION
    outputs: dict[str, str] = field(default_factory=dict)
    # where the fixture's REST API answers: a stage URL, and the Host header a peer routes APIs by (if any)
    rest_url: str = ""
    rest_host: str = ""
    # boto3's default session is not safe to make clients from in two threads; each peer runs in its own
    _session: boto3.session.Session = field(
        default_factory=lambda: boto3.session.Session(aws_access_key_id=FAKE_ACCESS_KEY,
                                                      aws_secret_access_key=FAKE_SECRET_KEY))
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self._session.client(
                    service,  # type: ignore[call-overload]
                    endpoint_url=self.endpoint,
                    region_name=self.region,
                    # No retries: an observation is what the endpoint answered the first time.
                    config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=60,
                                  s3={"addressing_style": "path"}, max_pool_connections=32),
                )
            return self._clients[service]

    def resource(self, service: str) -> Any:
        with self._lock:
            return self._session.resource(
                service,  # type: ignore[call-overload]
                endpoint_url=self.endpoint, region_name=self.region,
            )


@dataclass(frozen=True)
class Scenario:
    """One behaviour, observed the same way on every peer.

    `aws` is the observation AWS would give according to `doc` (an AWS documentation page).
    `ours_known` names a difference of the local cloud that is known and documented, so a reader of the
    table sees why it is accepted; `needs_fixture` scenarios use the fixture stack's functions.
    """

    key: str
    title: str
    doc: str
    aws: Observation
    run: Callable[[Aws], Observation]
    needs_fixture: bool = False
    ours_known: str = ""


def unique(prefix: str) -> str:
    """A resource name no earlier run on the same endpoint used."""
    return f"peer-{prefix}-{uuid.uuid4().hex[:8]}"


def error_code(error: ClientError) -> str:
    """The error code as the API reference names it: SQS's JSON protocol answers
    `AWS.SimpleQueueService.NonExistentQueue` where the reference says `NonExistentQueue`."""
    return str(error.response.get("Error", {}).get("Code", "")).rsplit(".", 1)[-1]


def http_status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def outcome(call: Callable[[], Any]) -> str:
    """"ok", or the error code the call was refused with."""
    try:
        call()
    except ClientError as error:
        return error_code(error)
    return "ok"


def poll(probe: Callable[[], Any], timeout_s: float, interval_s: float = 0.25) -> Any:
    """`probe()` until it answers something truthy or the time is up; its last answer either way.

    Used where AWS delivers asynchronously: a scenario observes what arrived within its wait, and the
    wait is generous so that a slow machine changes nothing.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        answer = probe()
        if answer or time.monotonic() >= deadline:
            return answer
        time.sleep(interval_s)
