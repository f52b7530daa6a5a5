"""Contracts, settings, secrets and the thin AWS adapters (bus, SNS, WebSocket pusher)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from busline_core.bus import EventPublisher
from busline_core.connections import WebSocketPusher
from busline_core.contracts import (
    ChunkExtracted,
    ChunkExtractedRecord,
    ChunkTransformedRecord,
    Counts,
    PipelineRequest,
    SubmitTaskRequest,
    TaskFinished,
    TaskStatus,
    TaskSubmittedRecord,
)
from busline_core.errors import ConfigurationError, PublishFailed
from busline_core.secrets import active_faults, database_url, url_from_secret
from busline_core.settings import ApiSettings, LoadSettings, WatchdogSettings
from busline_core.spec import TaskSpec
from moto import mock_aws
from pydantic import ValidationError

from .conftest import REGION


def _sqs_record(detail_type: str, detail: dict[str, Any], receive_count: int = 1) -> dict[str, Any]:
    """An SQS record whose body is the EventBridge event, as the rule's SQS target delivers it."""
    event = {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": detail_type,
        "source": "busline",
        "account": "123456789012",
        "time": "2026-11-22T10:00:00Z",
        "region": REGION,
        "resources": [],
        "detail": detail,
    }
    return {
        "messageId": f"m-{detail.get('chunk', 0)}",
        "receiptHandle": "AQEB...",
        "body": json.dumps(event),
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": "1795000000000",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1795000000001",
        },
        "messageAttributes": {},
        "md5OfBody": "0" * 32,
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:TransformQueue",
        "awsRegion": REGION,
    }


def test_sqs_records_parse_to_typed_details() -> None:
    # Given SQS records carrying each event type / When parsed with the record models
    submitted = TaskSubmittedRecord.model_validate(_sqs_record("TaskSubmitted", {"taskId": "t1"}))
    extracted = ChunkExtractedRecord.model_validate(
        _sqs_record(
            "ChunkExtracted", {"taskId": "t1", "phase": "transform", "chunk": 3, "key": "k", "rows": 10}
        )
    )
    transformed = ChunkTransformedRecord.model_validate(
        _sqs_record("ChunkTransformed", {"taskId": "t1", "phase": "load", "chunk": 3, "key": "k2", "rows": 9})
    )
    # Then the details are typed, and dump with the JSON names the idempotency key uses
    assert submitted.body.detail.taskId == "t1"
    assert extracted.body.detail_type == "ChunkExtracted"
    assert extracted.body.detail.model_dump() == {
        "taskId": "t1",
        "phase": "transform",
        "chunk": 3,
        "key": "k",
        "rows": 10,
        "range": None,  # a raw chunk in the bucket, not a byte range of the source
        "offeredAgain": False,  # the source's rows, not the previous run's rejects offered again
        "firstRow": None,  # numbered from its chunk: no rows were offered again before it
        "correlationId": None,  # an event of a task submitted before correlation ids existed
    }
    assert transformed.body.detail.rows == 9
    assert int(extracted.attributes.ApproximateReceiveCount) == 1


def test_a_record_with_a_bad_detail_is_a_batch_item_failure() -> None:
    # Given a batch with one good and one malformed ChunkExtracted record
    good = _sqs_record("ChunkExtracted", {"taskId": "t1", "chunk": 0, "key": "k", "rows": 1})
    bad = _sqs_record("ChunkExtracted", {"taskId": "t1", "chunk": -1, "key": "k", "rows": 1})
    bad["messageId"] = "bad"
    handled: list[int] = []
    processor = BatchProcessor(EventType.SQS, model=ChunkExtractedRecord, raise_on_entire_batch_failure=False)
    # When Powertools processes it with the record model
    response = process_partial_response(
        event={"Records": [good, bad]},
        record_handler=lambda record: handled.append(record.body.detail.chunk),
        processor=processor,
    )
    # Then only the malformed record is reported failed
    assert handled == [0]
    assert response == {"batchItemFailures": [{"itemIdentifier": "bad"}]}


def test_submit_request_is_a_pipeline_or_a_spec() -> None:
    # Given both request shapes / When validated / Then each becomes its own model
    named = SubmitTaskRequest.model_validate({"pipeline": "flights", "params": {"chunkRows": 500}})
    assert named.root == PipelineRequest(pipeline="flights", params={"chunkRows": 500})
    adhoc = SubmitTaskRequest.model_validate(
        {
            "source": {"uri": "s3://b/x.csv", "format": "csv"},
            "columns": [{"name": "a", "type": "int"}],
            "target": {"table": "t", "key": ["a"]},
        }
    )
    assert isinstance(adhoc.root, TaskSpec)


def test_submit_request_errors_name_the_field() -> None:
    # Given a spec with a bad source format and a pipeline request with an unknown member
    with pytest.raises(ValidationError) as spec_error:
        SubmitTaskRequest.model_validate(
            {
                "source": {"uri": "s3://b/x", "format": "xml"},
                "columns": [{"name": "a", "type": "int"}],
                "target": {"table": "t", "key": ["a"]},
            }
        )
    with pytest.raises(ValidationError) as pipeline_error:
        SubmitTaskRequest.model_validate({"pipeline": "flights", "colour": "red"})
    # Then the locations name those fields
    assert [error["loc"] for error in spec_error.value.errors()] == [("spec", "source", "format")]
    assert [error["loc"] for error in pipeline_error.value.errors()] == [("pipeline", "colour")]


def test_task_finished_picks_its_detail_type() -> None:
    succeeded = TaskFinished(taskId="t", status=TaskStatus.SUCCEEDED, counts=Counts(read=1, loaded=1))
    failed = TaskFinished(taskId="t", status=TaskStatus.FAILED, counts=Counts())
    assert (succeeded.detail_type, failed.detail_type) == ("TaskSucceeded", "TaskFailed")


def test_settings_read_the_environment_and_name_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the API's environment without DATA_BUCKET
    monkeypatch.setenv("TASKS_TABLE", "tasks")
    monkeypatch.setenv("EVENT_BUS_NAME", "bus")
    monkeypatch.delenv("DATA_BUCKET", raising=False)
    # When the settings are read / Then the error names the variable
    with pytest.raises(ValidationError, match="data_bucket"):
        ApiSettings()
    # Given it is set, with CHUNK_ROWS / Then values and defaults are as documented
    monkeypatch.setenv("DATA_BUCKET", "data")
    monkeypatch.setenv("CHUNK_ROWS", "500")
    monkeypatch.setenv("PAGE_TOKEN_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:tokens")
    monkeypatch.setenv("WEB_ORIGIN", "https://busline.example.com")
    api = ApiSettings()
    assert (api.tasks_table, api.event_bus_name, api.data_bucket, api.chunk_rows) == (
        "tasks",
        "bus",
        "data",
        500,
    )
    watchdog = WatchdogSettings()
    assert (watchdog.stall_seconds, watchdog.dead_letter_queue_urls) == (300, "")
    load = LoadSettings()
    assert (load.max_receive_count, load.faults_parameter, load.database_secret_arn) == (3, "", "")


def test_database_url_from_either_secret_shape() -> None:
    assert url_from_secret({"url": "postgresql://u:p@h:5432/d"}) == "postgresql://u:p@h:5432/d"
    rds = {"host": "db.example", "port": 6543, "username": "app", "password": "p@ss/word", "dbname": "etl"}
    assert url_from_secret(rds) == "postgresql://app:p%40ss%2Fword@db.example:6543/etl"
    with pytest.raises(ConfigurationError, match="password"):
        url_from_secret({"host": "h", "username": "u"})


@mock_aws
def test_database_url_comes_from_secrets_manager() -> None:
    # Given a database secret / When it is read / Then its URL comes back
    parameters.clear_caches()
    secrets = boto3.client("secretsmanager", region_name=REGION)
    arn = secrets.create_secret(Name="db", SecretString=json.dumps({"url": "postgresql://a:b@c/d"}))["ARN"]
    assert database_url(arn) == "postgresql://a:b@c/d"
    parameters.clear_caches()


def test_fault_switch_is_read_with_a_one_second_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # (moto's SSM spends seconds loading AWS's public parameters on first use, so the Powertools
    # call is observed here instead; the SSM round trip is exercised by the integration tests.)
    calls: list[tuple[str, int | None]] = []
    value = "none"

    def fake_get_parameter(name: str, max_age: int | None = None) -> str:
        calls.append((name, max_age))
        return value

    monkeypatch.setattr(parameters, "get_parameter", fake_get_parameter)
    # Given the switch says "none" / Then no fault is active
    assert active_faults("/busline/faults", max_age=60) == frozenset()
    # Given it is flipped to two faults / Then both are active
    value = "transform:fail, Load:fail"
    assert active_faults("/busline/faults", max_age=60) == frozenset({"transform:fail", "load:fail"})
    # And every read went through Powertools with the given max_age; no parameter name means no read at all
    assert active_faults("", max_age=60) == frozenset()
    assert calls == [("/busline/faults", 60), ("/busline/faults", 60)]


class _RefusingEvents:
    def put_events(self, Entries: list[dict[str, str]]) -> dict[str, Any]:  # noqa: N803 (boto3's name)
        return {
            "FailedEntryCount": 1,
            "Entries": [{"ErrorCode": "ThrottlingException", "ErrorMessage": "slow down"}],
        }


class _CountingEvents:
    def __init__(self) -> None:
        self.batches: list[int] = []

    def put_events(self, Entries: list[dict[str, str]]) -> dict[str, Any]:  # noqa: N803
        self.batches.append(len(Entries))
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(i)} for i in range(len(Entries))]}


def test_publisher_sends_batches_of_ten_and_raises_on_refused_entries() -> None:
    # Given 23 events / When published / Then PutEvents is called with 10, 10 and 3 entries
    events = _CountingEvents()
    detail = ChunkExtracted(taskId="t", chunk=0, key="k", rows=1)
    assert EventPublisher(events, "bus").publish_many([("ChunkExtracted", detail)] * 23) == 23
    assert events.batches == [10, 10, 3]
    # Given EventBridge refuses an entry / Then publishing raises, naming the error
    with pytest.raises(PublishFailed, match="ThrottlingException"):
        EventPublisher(_RefusingEvents(), "bus").publish("ChunkExtracted", detail)


class _GoneClient:
    def post_to_connection(self, ConnectionId: str, Data: bytes) -> None:  # noqa: N803
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "GoneException", "Message": "gone"}}, "PostToConnection")


@mock_aws
def test_websocket_pusher_posts_and_reports_gone_connections() -> None:
    # Given the management API (moto records the call) / When a message is pushed / Then it is delivered
    client = boto3.client(
        "apigatewaymanagementapi",
        region_name=REGION,
        endpoint_url="https://abc.execute-api.us-east-1.amazonaws.com/dev",
    )
    assert (
        WebSocketPusher("https://abc.execute-api.us-east-1.amazonaws.com/dev", client).push("c1", {"a": 1})
        is True
    )
    # Given a connection that is gone / Then push answers False instead of raising
    assert WebSocketPusher("https://x", _GoneClient()).push("c1", {"a": 1}) is False
