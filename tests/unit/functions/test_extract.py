"""src/extract/app.py: SQS (TaskSubmitted) -> chunks in S3 + ChunkExtracted events, once per task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from busline_core.errors import InvalidTask
from handler_kit import (
    OWNER,
    SUBMITTING_REQUEST,
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
    assert [e["detail"] for e in of_type(published, "PhaseCompleted")] == [
        {"taskId": task_id, "phase": "extract", "chunks": 3, "correlationId": SUBMITTING_REQUEST}
    ]
    # each carrying the submitting request's correlation id, which came with the TaskSubmitted record
    assert {c["detail"]["correlationId"] for c in chunks} == {SUBMITTING_REQUEST}
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


def _csv(rows: list[dict[str, Any]]) -> bytes:
    lines = [",".join(rows[0])] + [",".join(str(value) for value in row.values()) for row in rows]
    return "\n".join(lines).encode()


def test_a_loopback_http_source_is_read_only_where_the_stack_enables_it(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch,
    loopback_files: tuple[str, Path],
) -> None:
    # Given 250 rows served over plain http on loopback, and the template's own setting: off
    base, folder = loopback_files
    (folder / "payments.csv").write_bytes(_csv(numbered_rows(250)))
    uri = f"{base}/payments.csv"
    assert cloud.stack is not None
    assert cloud.stack.environment("ExtractFunction")["ALLOW_LOOPBACK_HTTP_SOURCES"] == "false"
    monkeypatch.setenv("ALLOW_LOOPBACK_HTTP_SOURCES", "false")
    # When the API gets a spec naming it / Then it is refused naming the field, and nothing is recorded
    with pytest.raises(InvalidTask) as refused:
        submit(small_spec(uri))
    assert refused.value.errors == [
        {"field": "source.uri", "message": "plain http:// is not allowed on this stack; use https://"}
    ]
    assert cloud.published() == []

    # Given the local cloud's setting (AllowLoopbackHttpSources=true)
    monkeypatch.setenv("ALLOW_LOOPBACK_HTTP_SOURCES", "true")
    task_id = submit(small_spec(uri))
    [announcement] = of_type(cloud.published(), "TaskSubmitted")
    stale_id = submit(small_spec(uri))
    [stale] = of_type(cloud.published(), "TaskSubmitted")
    # When its extract function gets the first task / Then all 250 rows are read in 3 chunks
    extract = load_handler("extract")
    assert extract.lambda_handler(sqs_event("extract_sqs.json", announcement), context) == {"batchItemFailures": []}
    task = cloud.task(task_id)
    assert (task["status"], task["count_read"], task["extract_total"]) == ("TRANSFORMING", 250, 3)

    # When an extract function deployed without the setting gets the second task (defence in depth)
    monkeypatch.setenv("ALLOW_LOOPBACK_HTTP_SOURCES", "false")
    deployed = load_handler("extract")
    assert deployed.lambda_handler(sqs_event("extract_sqs.json", stale), context) == {"batchItemFailures": []}
    # Then that task fails at once, saying why, without a byte read
    task = cloud.task(stale_id)
    assert (task["status"], task["error"]["phase"]) == ("FAILED", "extract")
    assert task["error"]["message"] == (
        f"source {uri} is unreadable: plain http:// is not allowed on this stack; use https://"
    )
    assert task["count_read"] == 0
