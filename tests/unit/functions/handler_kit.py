"""Helpers of the handler tests (a module with its own name: `import conftest` is ambiguous across folders)."""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
from aws_lambda_powertools.utilities import parameters

from busline.localcloud.in_process import ProvisionedStack, provision_in_process

REPO = Path(__file__).resolve().parents[3]
EVENTS = REPO / "events"
TEMPLATE = REPO / "template.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"
# the signed-in caller of the sample events (events/api_*.json claims, events/ws_*.json principal)
OWNER = "7d3f6a2e-5b1c-4e8a-9f40-2c6b1d8e9a73"
WS_API_ID = "w1x2y3z4v5"
WS_ENDPOINT = f"https://{WS_API_ID}.execute-api.{REGION}.amazonaws.com/dev"


@dataclass
class FakeLambdaContext:
    function_name: str = "busline-test-function"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:busline-test-function"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/busline-test-function"
    log_stream_name: str = "2026/11/22/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@dataclass
class Cloud:
    """What the fixture provisioned in moto from template.yaml, plus helpers to read what the handlers did."""

    bucket: str
    bus: str
    tasks_table: str
    connections_table: str
    faults_parameter: str
    observer_queue_url: str
    topic_arn: str
    idempotency_table: str = ""
    stack: ProvisionedStack | None = None  # every physical name and output of the template

    def published(self) -> list[dict[str, Any]]:
        """Every event put on the bus since the last call (a catch-all rule feeds an SQS queue)."""
        sqs = boto3.client("sqs", region_name=REGION)
        events: list[dict[str, Any]] = []
        while True:
            response = sqs.receive_message(QueueUrl=self.observer_queue_url, MaxNumberOfMessages=10)
            messages = response.get("Messages", [])
            if not messages:
                return events
            for message in messages:
                events.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.observer_queue_url, ReceiptHandle=message["ReceiptHandle"])

    def task(self, task_id: str) -> dict[str, Any]:
        table = boto3.resource("dynamodb", region_name=REGION).Table(self.tasks_table)
        return table.get_item(Key={"taskId": task_id}, ConsistentRead=True)["Item"]

    def age_task(self, task_id: str, age: timedelta) -> None:
        """Make a task look as if its last change was `age` ago (what the watchdog looks at)."""
        table = boto3.resource("dynamodb", region_name=REGION).Table(self.tasks_table)
        table.update_item(
            Key={"taskId": task_id},
            UpdateExpression="SET updatedAtMs = updatedAtMs - :age",
            ExpressionAttributeValues={":age": int(age.total_seconds() * 1000)},
        )

    def set_faults(self, value: str) -> None:
        boto3.client("ssm", region_name=REGION).put_parameter(
            Name=self.faults_parameter, Value=value, Type="String", Overwrite=True
        )
        parameters.clear_caches()

    def pushed(self, connection_id: str) -> list[dict[str, Any]]:
        """Messages posted to a WebSocket connection (moto concatenates them per connection)."""
        from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends

        data = apigatewaymanagementapi_backends[ACCOUNT][REGION].connections[connection_id].data.decode()
        decoder, messages, index = json.JSONDecoder(), [], 0
        while index < len(data):
            message, index = decoder.raw_decode(data, index)
            messages.append(message)
        return messages


def create_resources() -> Cloud:
    """template.yaml's resources, made by the local cloud's provisioner in the running mock_aws(), plus
    an observer queue (test instrumentation) that receives every event put on the bus."""
    stack = provision_in_process(TEMPLATE, region=REGION)
    bus = stack.name("EventBus")
    events = boto3.client("events", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    observer_url = sqs.create_queue(QueueName="busline-observer")["QueueUrl"]
    observer_arn = sqs.get_queue_attributes(QueueUrl=observer_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="observe-all", EventBusName=bus, EventPattern=json.dumps({"source": ["busline"]}))
    events.put_targets(Rule="observe-all", EventBusName=bus, Targets=[{"Id": "observer", "Arn": observer_arn}])
    return Cloud(
        bucket=stack.name("DataBucket"), bus=bus, tasks_table=stack.name("TasksTable"),
        connections_table=stack.name("ConnectionsTable"), faults_parameter=stack.name("FaultsParameter"),
        observer_queue_url=observer_url, topic_arn=stack.name("NotificationTopic"),
        idempotency_table=stack.name("IdempotencyTable"), stack=stack,
    )


def event_file(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def sqs_event(template: str, bridge_event: dict[str, Any], *, receive_count: int = 1) -> dict[str, Any]:
    """The events/ SQS file with its body replaced by an EventBridge event, as the rule delivers it."""
    event = copy.deepcopy(event_file(template))
    record = event["Records"][0]
    # moto's EventBridge->SQS delivery drops "account" from the event; AWS always sends it (and the
    # Powertools EventBridgeModel requires it), so put it back to get AWS's shape.
    record["body"] = json.dumps({"version": "0", "account": ACCOUNT, **bridge_event})
    record["md5OfBody"] = hashlib.md5(record["body"].encode()).hexdigest()
    record["messageId"] = str(uuid.uuid5(uuid.NAMESPACE_URL, record["body"]))
    record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    return event


def of_type(events: list[dict[str, Any]], detail_type: str) -> list[dict[str, Any]]:
    return [event for event in events if event["detail-type"] == detail_type]


def upload_csv(cloud: Cloud, key: str, rows: list[dict[str, Any]]) -> str:
    header = list(rows[0])
    lines = [",".join(header)] + [",".join(str(row[column]) for column in header) for row in rows]
    boto3.client("s3", region_name=REGION).put_object(Bucket=cloud.bucket, Key=key, Body="\n".join(lines).encode())
    return f"s3://{cloud.bucket}/{key}"


def small_spec(source_uri: str, chunk_rows: int = 100) -> dict[str, Any]:
    """An ad-hoc spec over the CSV of `numbered_rows`: ids, a value that sometimes fails to cast, a filter."""
    return {
        "source": {"uri": source_uri, "format": "csv"},
        "columns": [
            {"name": "id", "type": "int", "required": True},
            {"name": "amount", "type": "decimal"},
            {"name": "kind", "type": "string"},
        ],
        "filters": [{"column": "kind", "op": "ne", "value": "skip"}],
        "target": {"table": "payments", "key": ["id"], "mode": "upsert"},
        "chunkRows": chunk_rows,
    }


def numbered_rows(count: int) -> list[dict[str, Any]]:
    """Row i: amount 'oops' every 50th row (a reject), kind 'skip' every 10th (filtered), else 'pay'."""
    return [
        {"id": i, "amount": "oops" if i % 50 == 0 else f"{i}.25", "kind": "skip" if i % 10 == 0 and i % 50 else "pay"}
        for i in range(1, count + 1)
    ]


SUBMITTING_REQUEST = "req-submit-1"  # the correlation id `submit` gives its tasks


def submit(spec: dict[str, Any]) -> str:
    """Submit as the API function would (its deps built from the environment the template gives it), as
    request SUBMITTING_REQUEST; afterwards no id is bound, so a step has only its record to go by."""
    from busline_core import correlation, task_api
    from busline_core.deps import build_api_deps
    from busline_core.settings import ApiSettings

    correlation.bind(SUBMITTING_REQUEST)
    try:
        return task_api.submit_task(spec, OWNER, build_api_deps(ApiSettings())).taskId
    finally:
        correlation.bind(None)


def extracted_task(cloud: Cloud, rows: int = 250) -> tuple[str, list[dict[str, Any]]]:
    """A task over `numbered_rows(rows)` submitted and extracted (chunks of 100) by the steps themselves;
    returns its id and the ChunkExtracted events the extract published."""
    from busline_core import etl_steps
    from busline_core.contracts import TaskSubmitted
    from busline_core.deps import build_extract_deps
    from busline_core.settings import ExtractSettings

    uri = upload_csv(cloud, f"uploads/{OWNER}/payments.csv", numbered_rows(rows))
    task_id = submit(small_spec(uri))
    etl_steps.extract_task(TaskSubmitted(taskId=task_id), build_extract_deps(ExtractSettings()))
    return task_id, of_type(cloud.published(), "ChunkExtracted")
