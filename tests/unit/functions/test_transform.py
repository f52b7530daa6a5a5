"""src/transform/app.py: SQS (ChunkExtracted) -> typed rows + rejects in S3, ChunkTransformed, counts."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from handler_kit import Cloud, FakeLambdaContext, event_file, extracted_task, of_type, sqs_event


def test_sample_event_parses_and_an_unknown_task_is_skipped(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given the sample events/transform_sqs.json, whose task does not exist here / When it is handled
    result = load_handler("transform").lambda_handler(event_file("transform_sqs.json"), context)
    # Then the record succeeds with nothing to do
    assert result == {"batchItemFailures": []}
    assert cloud.published() == []


def test_transforms_each_chunk_once_and_completes_the_phase(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a task over 250 rows extracted into 3 chunks
    transform = load_handler("transform")
    task_id, chunks = extracted_task(cloud)
    assert len(chunks) == 3
    # When each ChunkExtracted record is handled (the second chunk twice: a redelivery)
    results = [transform.lambda_handler(sqs_event("transform_sqs.json", chunk), context) for chunk in chunks]
    results.append(transform.lambda_handler(sqs_event("transform_sqs.json", chunks[1], receive_count=2), context))
    # Then every record succeeded, each chunk was announced once, and the counts are exact:
    # rows 50, 100, ... 250 fail the decimal cast (5 rejects); rows 10, 20, ... not multiples of 50 are filtered (20)
    assert results == [{"batchItemFailures": []}] * 4
    published = cloud.published()
    transformed = of_type(published, "ChunkTransformed")
    assert sorted((e["detail"]["chunk"], e["detail"]["rows"], e["detail"]["phase"]) for e in transformed) == [
        (0, 90, "load"), (1, 90, "load"), (2, 45, "load"),
    ]
    assert [e["detail"]["phase"] for e in of_type(published, "PhaseCompleted")] == ["transform"]
    task = cloud.task(task_id)
    assert (task["status"], task["transform_done"], task["count_filtered"], task["count_rejected"]) == ("LOADING", 3, 20, 5)
    # And the function emitted its rows metric (EMF on stdout) for the three real runs
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"RowsTransformed"' in line]
    assert sorted(m["RowsTransformed"] for m in metrics) == [[45.0], [90.0], [90.0]]


def test_a_failing_chunk_is_reported_and_fails_the_task_on_its_last_delivery(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given an extracted task and the fault switch failing transforms
    transform = load_handler("transform")
    task_id, chunks = extracted_task(cloud)
    cloud.set_faults("transform:fail")
    # When chunk 1 fails on its first and on its last (3rd) delivery
    first = sqs_event("transform_sqs.json", chunks[1], receive_count=1)
    first_result = transform.lambda_handler(first, context)
    status_after_first = cloud.task(task_id)["status"]
    last = sqs_event("transform_sqs.json", chunks[1], receive_count=3)
    last_result = transform.lambda_handler(last, context)
    # Then both report exactly that message; only the last one fails the task, naming phase and chunk
    assert first_result == {"batchItemFailures": [{"itemIdentifier": first["Records"][0]["messageId"]}]}
    assert last_result == {"batchItemFailures": [{"itemIdentifier": last["Records"][0]["messageId"]}]}
    assert status_after_first == "TRANSFORMING"
    task = cloud.task(task_id)
    assert (task["status"], task["error"]["phase"], task["error"]["chunk"]) == ("FAILED", "transform", 1)
    published = cloud.published()
    assert of_type(published, "ChunkTransformed") == []
    assert len(of_type(published, "TaskFailed")) == 1


def test_a_failed_delivery_comes_back_after_a_backoff_of_seconds_and_is_shown_meanwhile(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the transform queue of the template (visibility timeout 360 s), the function told its URL as
    # the template tells it, and a chunk's message received from that queue
    assert cloud.stack is not None
    queue_url = cloud.stack.environment("TransformFunction")["STEP_QUEUE_URL"]
    assert queue_url == cloud.stack.name("TransformQueue")
    monkeypatch.setenv("STEP_QUEUE_URL", queue_url)
    transform = load_handler("transform")
    task_id, chunks = extracted_task(cloud)
    sqs = boto3.client("sqs")
    sqs.purge_queue(QueueUrl=queue_url)  # the ChunkExtracted events moto's rule delivered: only ours stays
    event = sqs_event("transform_sqs.json", chunks[1], receive_count=2)
    sqs.send_message(QueueUrl=queue_url, MessageBody=event["Records"][0]["body"])
    received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1, VisibilityTimeout=360)["Messages"][0]
    event["Records"][0]["receiptHandle"] = received["ReceiptHandle"]
    # When its second delivery fails on the fault switch
    cloud.set_faults("transform:fail")
    result = transform.lambda_handler(event, context)
    # Then the failure is reported, and the task shows the chunk waiting for attempt 3, due in 2 s
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    retrying = cloud.task(task_id)["retrying"]
    assert [(notice["phase"], notice["chunk"], notice["attempt"]) for notice in retrying.values()] == [("transform", 1, 2)]
    assert "fault switch" in next(iter(retrying.values()))["error"]
    # And the message is back on the queue after the 2 s backoff (1 s, 2 s, 4 s ...), not after the 360 s
    # visibility timeout
    assert sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1).get("Messages", []) == []
    time.sleep(2.6)
    again = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1, AttributeNames=["All"])["Messages"]
    assert [message["Attributes"]["ApproximateReceiveCount"] for message in again] == ["2"]


def _batch(*records: dict[str, Any]) -> dict[str, Any]:
    """One SQS invocation of several records (each built by sqs_event), as a mapping with BatchSize > 1 sends."""
    return {"Records": [event["Records"][0] for event in records]}


def _calls(transform: Any) -> list[str]:
    """The names of the AWS calls the function's task table and event bus clients make from now on."""
    made: list[str] = []
    for client in (transform.deps.tasks._table.meta.client, transform.deps.publisher._events):
        client.meta.events.register("before-call", lambda model, **_: made.append(model.name))
    return made


def test_a_batch_of_chunks_is_announced_in_one_put_events_and_counted_in_one_write(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given a task over 250 rows extracted into 3 chunks
    transform = load_handler("transform")
    task_id, chunks = extracted_task(cloud)
    calls = _calls(transform)
    # When one invocation receives all three chunks
    result = transform.lambda_handler(_batch(*(sqs_event("transform_sqs.json", chunk) for chunk in chunks)), context)
    # Then every record succeeded with one read of the task, one PutEvents of the three ChunkTransformed and
    # one write counting them; the write that completes the phase and its PhaseCompleted follow
    assert result == {"batchItemFailures": []}
    assert calls == ["GetItem", "PutEvents", "UpdateItem", "UpdateItem", "PutEvents"]
    transformed = of_type(cloud.published(), "ChunkTransformed")
    assert sorted(event["detail"]["chunk"] for event in transformed) == [0, 1, 2]
    task = cloud.task(task_id)
    assert (task["status"], task["transform_done"], task["count_filtered"], task["count_rejected"]) == ("LOADING", 3, 20, 5)


def test_a_batch_whose_finish_fails_reports_each_of_its_records_and_counts_none(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given a task extracted into 3 chunks, and EventBridge failing the next PutEvents
    from botocore.exceptions import ClientError

    transform = load_handler("transform")
    task_id, chunks = extracted_task(cloud)
    failures = [ClientError({"Error": {"Code": "InternalException", "Message": "try again"}}, "PutEvents")]

    def fail_once(**_: Any) -> None:
        if failures:
            raise failures.pop()

    transform.deps.publisher._events.meta.events.register("before-call.events.PutEvents", fail_once)
    # When one invocation receives chunks 0 and 1, and the end of the batch cannot publish
    event = _batch(*(sqs_event("transform_sqs.json", chunk) for chunk in chunks[:2]))
    result = transform.lambda_handler(event, context)
    # Then both records are reported failed, neither is counted, and the task shows them as retrying
    assert result == {"batchItemFailures": [{"itemIdentifier": record["messageId"]} for record in event["Records"]]}
    task = cloud.task(task_id)
    assert (task["status"], task.get("transform_done", 0)) == ("TRANSFORMING", 0)
    assert sorted((notice["chunk"], notice["attempt"]) for notice in task["retrying"].values()) == [(0, 1), (1, 1)]
    # And delivered again, with the third chunk, they are done and counted once
    again = _batch(*(sqs_event("transform_sqs.json", chunk, receive_count=2) for chunk in chunks[:2]),
                   sqs_event("transform_sqs.json", chunks[2]))  # fmt: skip
    assert transform.lambda_handler(again, context) == {"batchItemFailures": []}
    task = cloud.task(task_id)
    assert (task["status"], task["transform_done"], task["count_filtered"], task["count_rejected"]) == ("LOADING", 3, 20, 5)
    assert task.get("retrying", {}) == {}
    assert sorted(event["detail"]["chunk"] for event in of_type(cloud.published(), "ChunkTransformed")) == [0, 1, 2]
