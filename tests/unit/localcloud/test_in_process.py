"""provision_in_process(): a template's resources created by the local cloud's provisioner inside
mock_aws(), as the unit-test fixtures use it; and the reversible DynamoDB atomicity patch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from busline_core.errors import ListingUnavailable
from busline_core.tasks_repo import TasksRepository
from moto import mock_aws

from busline.localcloud.cloud import local_parameters
from busline.localcloud.in_process import provision_in_process
from busline.localcloud.model import ProvisionError
from busline.localcloud.moto_patches import atomic_dynamodb
from busline.localcloud.template import load_and_translate

REPO = Path(__file__).resolve().parents[3]
REGION = "us-east-1"
ACCOUNT = "123456789012"

SECRETS_TEMPLATE = """
Resources:
  PageTokenKey:
    Type: AWS::SecretsManager::Secret
    Properties:
      Description: HMAC key for page tokens
      GenerateSecretString:
        PasswordLength: 48
        ExcludePunctuation: true
        ExcludeCharacters: "abcXYZ019"
  GivenSecret:
    Type: AWS::SecretsManager::Secret
    Properties:
      SecretString: '{"url": "postgresql://u@h/d"}'
      GenerateSecretString:
        PasswordLength: 8
Outputs:
  PageTokenKeyArn:
    Value: !Ref PageTokenKey
"""


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


def client(service: Any) -> Any:
    return boto3.client(service, region_name=REGION)


def test_template_yaml_tables_queues_and_outputs_come_from_the_template(aws: None) -> None:
    # Given template.yaml with one parameter overridden
    # When it is provisioned in-process
    stack = provision_in_process(REPO / "template.yaml", {"MaxReceiveCount": "5"})

    # Then the tasks table has the template's key, owner index and stream
    table = client("dynamodb").describe_table(TableName=stack.name("TasksTable"))["Table"]
    assert table["KeySchema"] == [{"AttributeName": "taskId", "KeyType": "HASH"}]
    [index] = table["GlobalSecondaryIndexes"]
    assert (index["IndexName"], index["Projection"]) == (
        "byOwner", {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["pipeline", "status"]}
    )
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    assert stack.attribute("TasksTable", "StreamArn") == table["LatestStreamArn"]
    # And the step queues redrive to their DLQs after the overridden receive count
    attributes = client("sqs").get_queue_attributes(QueueUrl=stack.name("ExtractQueue"), AttributeNames=["All"])
    redrive = json.loads(attributes["Attributes"]["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == stack.attribute("ExtractDeadLetterQueue", "Arn")
    assert int(redrive["maxReceiveCount"]) == 5
    # And the outputs name the same resources, with AWS's URLs (no local gateway runs in-process)
    assert stack.outputs["TasksTableName"] == stack.name("TasksTable")
    assert stack.outputs["EventBusName"] == stack.name("EventBus")
    assert stack.outputs["RestApiUrl"].startswith("https://")
    assert stack.outputs["RestApiUrl"].endswith(f".execute-api.{REGION}.amazonaws.com/dev")
    # And the functions get the template's environment, without a local endpoint
    environment = stack.environment("ExtractFunction")
    assert environment["TASKS_TABLE"] == stack.name("TasksTable")
    assert environment["MAX_RECEIVE_COUNT"] == "5"
    assert "AWS_ENDPOINT_URL" not in environment


def test_an_upgrade_can_provision_the_tasks_table_without_its_owner_index(aws: None) -> None:
    # Given template.yaml with OwnerIndex=none (the first deploy of an upgrade from a stack whose owner index
    # held whole items, which CloudFormation cannot change in place)
    # When it is provisioned in-process
    stack = provision_in_process(REPO / "template.yaml", {"OwnerIndex": "none"})
    # Then the tasks table has no index, and defines only the attribute its key uses (DynamoDB refuses others)
    table = client("dynamodb").describe_table(TableName=stack.name("TasksTable"))["Table"]
    assert table.get("GlobalSecondaryIndexes", []) == []  # (moto answers an empty list where AWS leaves it out)
    assert table["AttributeDefinitions"] == [{"AttributeName": "taskId", "AttributeType": "S"}]
    # And listing tasks meanwhile says to try again (the API's 503), not an unexpected error
    tasks = TasksRepository(boto3.resource("dynamodb", region_name=REGION).Table(stack.name("TasksTable")))
    with pytest.raises(ListingUnavailable, match="the task list is being rebuilt"):
        tasks.list_by_owner("ana", 10)


def test_the_local_cloud_enables_loopback_sources_in_the_functions_that_judge_or_read_them(aws: None) -> None:
    # Given template.yaml's parameters and a local cloud started with one --param
    declared = load_and_translate(REPO / "template.yaml", REGION)["Parameters"]
    load_url = "postgresql://busline_load:pw@127.0.0.1:5432/busline"
    parameters = local_parameters(declared, {"MaxReceiveCount": "5"}, load_url)
    # Then the local cloud adds its Postgres and loopback sources; an explicit --param wins; a template
    # declaring neither gets neither
    assert parameters == {"MaxReceiveCount": "5", "DatabaseUrl": load_url, "AllowLoopbackHttpSources": "true"}
    assert local_parameters(declared, {"AllowLoopbackHttpSources": "false"}, load_url)["AllowLoopbackHttpSources"] == "false"
    assert local_parameters({}, {}, load_url) == {}
    # When the template is provisioned with them, and with its defaults (a deployed stack)
    local = provision_in_process(REPO / "template.yaml", parameters)
    setting = {name: function.environment.get("ALLOW_LOOPBACK_HTTP_SOURCES") for name, function in local.model.functions.items()}
    # Then exactly the API, scheduled-run, inbox, extract and transform functions get the setting, "true" here
    assert {name: value for name, value in setting.items() if value is not None} == {
        "ApiFunction": "true", "ScheduledRunFunction": "true", "InboxFunction": "true", "ExtractFunction": "true",
        "TransformFunction": "true",
    }
    assert declared["AllowLoopbackHttpSources"]["Default"] == "false"


def test_each_call_provisions_afresh_into_the_running_mock(aws: None) -> None:
    # Given template.yaml provisioned once in this mock
    provision_in_process(REPO / "template.yaml")
    # When the same stack is provisioned again / Then the first named resource already exists in moto
    # (which one comes first follows the dependency order, not a promise of this test; a KMS key, which
    # has no name, is simply created again)
    with pytest.raises(ProvisionError, match=r"^(\w+): AWS::\w+::\w+: .*already exists"):
        provision_in_process(REPO / "template.yaml")


def test_generated_secret_honours_its_rules_and_a_given_string_wins(aws: None, tmp_path: Path) -> None:
    # Given a template with a generated HMAC key and a secret that also gives its SecretString
    template = tmp_path / "template.yaml"
    template.write_text(SECRETS_TEMPLATE)
    # When it is provisioned
    stack = provision_in_process(template, stack_name="t")

    # Then Ref of the generated secret (and so the output) is its ARN
    arn = stack.name("PageTokenKey")
    assert arn.startswith(f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:t-PageTokenKey-")
    assert stack.outputs == {"PageTokenKeyArn": arn}
    # And the generated value follows PasswordLength, ExcludePunctuation and ExcludeCharacters
    secrets = client("secretsmanager")
    key = secrets.get_secret_value(SecretId=arn)["SecretString"]
    assert len(key) == 48
    assert key.isalnum()
    assert set(key).isdisjoint("abcXYZ019")
    # And a second provisioning generates another key
    other = tmp_path / "other.yaml"
    other.write_text(SECRETS_TEMPLATE)
    again = provision_in_process(other, stack_name="u")
    assert secrets.get_secret_value(SecretId=again.name("PageTokenKey"))["SecretString"] != key
    # And an explicit SecretString is stored as given
    given = secrets.get_secret_value(SecretId=stack.name("GivenSecret"))["SecretString"]
    assert json.loads(given) == {"url": "postgresql://u@h/d"}


def test_atomic_dynamodb_is_undone_when_the_block_ends() -> None:
    from moto.dynamodb.responses import DynamoHandler
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    # Given moto's own request dispatch
    before = (DynamoHandler.call_action, DynamoDBStreamsHandler.call_action)
    # When the block serializes it / Then both handlers are wrapped inside and restored after
    with atomic_dynamodb():
        inside = (DynamoHandler.call_action, DynamoDBStreamsHandler.call_action)
        assert [wrapped.__wrapped__ for wrapped in inside] == list(before)  # type: ignore[attr-defined]
    assert (DynamoHandler.call_action, DynamoDBStreamsHandler.call_action) == before
