"""One local cloud for the whole conformance suite (starting one costs seconds), shared by every test here.

The cloud runs tests/fixtures/localcloud/template.yaml, a small SAM app with one resource per feature;
its functions record what they received in RecordsTable, which is how the tests count deliveries.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from conformance_support import CLOUD_ARGS, START_TIMEOUT_S, TEMPLATE, Aws, cloud_data_dir, wait_until

from busline.localcloud.testing import RunningCloud, running_cloud


@pytest.fixture(scope="session")
def cloud() -> Iterator[RunningCloud]:
    with (
        cloud_data_dir("shared") as data_dir,
        running_cloud(TEMPLATE, data_dir, extra_args=CLOUD_ARGS, timeout_s=START_TIMEOUT_S) as running,
    ):
        yield running


@pytest.fixture(scope="session")
def aws(cloud: RunningCloud) -> Aws:
    return Aws(cloud.endpoints)


@pytest.fixture
def run_id() -> str:
    """Tags everything one test sends, so tests sharing the cloud never count each other's records."""
    return uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def warm_batch_function(aws: Aws) -> None:
    """Start BatchFunction's two workers before tests that count deliveries.

    A cold worker (process spawn + imports) can outlast the queue's 2 s VisibilityTimeout, and then SQS
    rightly redelivers; on AWS the same happens on a cold start, so the counting tests start warm.
    """
    queue_url = aws.outputs["WorkQueueUrl"]
    aws.send_json_batch(queue_url, [{"run": "warmup", "n": n, "sleep": 0.3} for n in range(10)])
    wait_until(
        lambda: len({item["n"] for item in aws.records("batch-attempt#warmup")}) == 10,
        60,
        "the 10 warm-up messages to be processed",
    )
    aws.wait_drained(queue_url, 30)
    # A warm-up message redelivered during the cold start may have reached the DLQ; the DLQ-depth test
    # needs it empty.
    aws.sqs.purge_queue(QueueUrl=aws.outputs["WorkDeadLetterQueueUrl"])
