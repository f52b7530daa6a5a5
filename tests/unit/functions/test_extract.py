"""src/extract/app.py: SQS (TaskSubmitted) -> chunks in S3 + ChunkExtracted events, once per task."""

from __future__ import annotations

from typing import Any

from handler_kit import (
    OWNER,
    Cloud,
    FakeLambdaContext,
    event_file,
    numbered_rows,
    of_type,
    small_spec,
    sqs_event,
    submit,
    upload_csv,
)


def submitted_task(cloud: Cloud, handler: Any, rows: int = 250) -> tuple[str, dict[str, Any]]:
    """A task over a CSV of `rows` rows in chunks of 100, and the TaskSubmitted event that announced it."""
    uri = upload_csv(cloud, f"uploads/{OWNER}/payments.csv", numbered_rows(rows))
    task_id = submit(small_spec(uri))
    [announcement] = of_type(cloud.published(), "TaskSubmitted")
    return task_id, announcement


def test_sample_event_parses_and_an_unknown_task_is_skipped(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given the sample events/extract_sqs.json, whose task does not exist here
    extract = load_handler("extract")
    # When it is handled / Then the record succeeds (nothing to extract) and nothing is published
    assert extract.lambda_handler(event_file("extract_sqs.json"), context) == {"batchItemFailures": []}
    assert cloud.published() == []


def test_extracts_the_source_into_chunks_and_announces_each(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given a submitted task over 250 rows, chunks of 100
    extract = load_handler("extract")
    task_id, announcement = submitted_task(cloud, extract)
    # When the extract function gets the TaskSubmitted record
    result = extract.lambda_handler(sqs_event("extract_sqs.json", announcement), context)
    # Then the record succeeded, 3 chunks were announced in order and extract completed with 250 rows read
    assert result == {"batchItemFailures": []}
    published = cloud.published()
    chunks = of_type(published, "ChunkExtracted")
    assert [(c["detail"]["chunk"], c["detail"]["rows"], c["detail"]["phase"]) for c in chunks] == [
        (0, 100, "transform"), (1, 100, "transform"), (2, 50, "transform"),
    ]
    assert [e["detail"] for e in of_type(published, "PhaseCompleted")] == [{"taskId": task_id, "phase": "extract", "chunks": 3}]
    task = cloud.task(task_id)
    assert (task["status"], task["count_read"], task["extract_total"]) == ("TRANSFORMING", 250, 3)


def test_a_redelivered_record_is_absorbed(cloud: Cloud, load_handler: Any, context: FakeLambdaContext) -> None:
    # Given a task whose TaskSubmitted record was already handled
    extract = load_handler("extract")
    _, announcement = submitted_task(cloud, extract)
    event = sqs_event("extract_sqs.json", announcement)
    assert extract.lambda_handler(event, context) == {"batchItemFailures": []}
    assert len(of_type(cloud.published(), "ChunkExtracted")) == 3
    # When the same record is delivered again (SQS at-least-once)
    result = extract.lambda_handler(sqs_event("extract_sqs.json", announcement, receive_count=2), context)
    # Then it succeeds without extracting or announcing anything again
    assert result == {"batchItemFailures": []}
    assert cloud.published() == []


def test_a_failing_record_is_reported_and_the_task_fails_only_on_the_last_delivery(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given a task and the fault switch set to fail extracts
    extract = load_handler("extract")
    task_id, announcement = submitted_task(cloud, extract)
    cloud.set_faults("extract:fail")
    # When the first delivery fails
    first = sqs_event("extract_sqs.json", announcement, receive_count=1)
    result = extract.lambda_handler(first, context)
    # Then its messageId is reported for redelivery and the task is not failed yet
    assert result == {"batchItemFailures": [{"itemIdentifier": first["Records"][0]["messageId"]}]}
    assert cloud.task(task_id)["status"] == "ACCEPTED"
    assert cloud.published() == []
    # When the last delivery (MAX_RECEIVE_COUNT = 3) fails too
    last = sqs_event("extract_sqs.json", announcement, receive_count=3)
    result = extract.lambda_handler(last, context)
    # Then it is reported (SQS moves it to the DLQ), the task is FAILED and TaskFailed is published once
    assert result == {"batchItemFailures": [{"itemIdentifier": last["Records"][0]["messageId"]}]}
    task = cloud.task(task_id)
    assert task["status"] == "FAILED"
    assert task["error"]["phase"] == "extract"
    assert "extract:fail" in task["error"]["message"]
    assert [e["detail"]["status"] for e in of_type(cloud.published(), "TaskFailed")] == ["FAILED"]


def test_a_body_that_is_not_the_expected_event_is_reported(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given a record whose body is not an EventBridge TaskSubmitted event
    event = event_file("extract_sqs.json")
    event["Records"][0]["body"] = '{"hello": "world"}'
    # When it is handled / Then exactly that record is reported as failed
    result = load_handler("extract").lambda_handler(event, context)
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
