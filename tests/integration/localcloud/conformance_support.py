"""Helpers shared by the local-cloud conformance tests (conftest.py holds the fixtures).

The cloud runs tests/fixtures/localcloud/template.yaml, a small SAM app with one resource per feature;
its functions record what they received in RecordsTable, which is how the tests count deliveries.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, TypeVar

import boto3
from boto3.dynamodb.conditions import Key

FIXTURE_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "localcloud"
TEMPLATE = FIXTURE_DIR / "template.yaml"
# Overriding the template's default stage ("live") proves --param reaches the intrinsics.
STAGE = "fixture"
# rate(1 minute) / 60 = one firing a second.
CLOUD_ARGS = ["--schedule-scale", "60", "--param", f"StageName={STAGE}"]
START_TIMEOUT_S = 90.0

T = TypeVar("T")


@contextlib.contextmanager
def cloud_data_dir(name: str) -> Iterator[Path]:
    """A data dir the `pgserver` system user can reach (run as root, Postgres runs as that user).

    pytest's tmp_path lives under /tmp/pytest-of-root (mode 0700), where initdb fails with
    "Permission denied"; mkdtemp under /tmp plus 0755 is traversable. Removed afterwards (its
    Postgres cluster is ~40 MB) unless BUSLINE_KEEP_TEST_DATA=1, to read console.log and logs/.
    """
    data_dir = Path(tempfile.mkdtemp(prefix=f"busline-conformance-{name}-"))
    data_dir.chmod(0o755)
    try:
        yield data_dir
    finally:
        if os.environ.get("BUSLINE_KEEP_TEST_DATA") != "1":
            shutil.rmtree(data_dir, ignore_errors=True)


def wait_until(probe: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 0.2) -> T:
    """Poll `probe` until it returns something other than None/False; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        last = probe()
        if last is not None and last is not False:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


@dataclass
class HttpResponse:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> HttpResponse:
    """One HTTP call that returns error statuses instead of raising (the tests assert on them)."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return HttpResponse(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return HttpResponse(error.code, error.headers, error.read())


class Aws:
    """boto3 clients pointed at the cloud's moto server, plus the queries the tests repeat."""

    def __init__(self, endpoints: dict[str, Any]) -> None:
        settings: dict[str, Any] = {
            "endpoint_url": endpoints["aws"],
            "region_name": endpoints["region"],
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        self.outputs: dict[str, str] = endpoints["outputs"]
        self.sqs = boto3.client("sqs", **settings)
        self.events = boto3.client("events", **settings)
        self.dynamodb = boto3.client("dynamodb", **settings)
        self.dynamodb_resource = boto3.resource("dynamodb", **settings)
        self._records = self.dynamodb_resource.Table(self.outputs["RecordsTableName"])

    def records(self, pk: str) -> list[dict[str, Any]]:
        """Every item the fixture functions recorded under `pk`, in sort-key order."""
        items: list[dict[str, Any]] = []
        query: dict[str, Any] = {"KeyConditionExpression": Key("pk").eq(pk), "ConsistentRead": True}
        while True:
            page = self._records.query(**query)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                return items
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def queue_depth(self, queue_url: str) -> tuple[int, int]:
        """(visible, in flight) messages of a queue."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]), int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def send_json_batch(self, queue_url: str, bodies: list[dict[str, Any]]) -> None:
        for start in range(0, len(bodies), 10):  # SQS takes at most 10 entries per batch
            chunk = bodies[start : start + 10]
            response = self.sqs.send_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(index), "MessageBody": json.dumps(body)} for index, body in enumerate(chunk)
                ],
            )
            assert response.get("Failed", []) == [], f"send_message_batch failed: {response['Failed']}"

    def wait_drained(self, queue_url: str, timeout_s: float) -> None:
        wait_until(lambda: self.queue_depth(queue_url) == (0, 0), timeout_s, f"{queue_url} to be empty")
