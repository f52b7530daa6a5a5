"""Finding Busline: endpoints.json, env vars, the default file, and a deployed stack's Outputs (moto)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber

from busline.cli.endpoints import DEFAULT_ENDPOINTS_FILE, EndpointsError, from_endpoints_file, resolve

LOCAL = {
    "rest": "http://127.0.0.1:3000", "websocket": "ws://127.0.0.1:3001", "web": "http://127.0.0.1:3002",
    "aws": "http://127.0.0.1:3003", "management": "http://127.0.0.1:3004", "postgres": "postgresql://x",
    "region": "eu-west-1",
    "outputs": {
        "ExtractQueueUrl": "http://127.0.0.1:3003/123456789012/extract",
        "ExtractDeadLetterQueueUrl": "http://127.0.0.1:3003/123456789012/extract-dlq",
        "LoadQueueUrl": "http://127.0.0.1:3003/123456789012/load",
        "LoadDeadLetterQueueUrl": "http://127.0.0.1:3003/123456789012/load-dlq",
        "TransformQueueUrl": "http://127.0.0.1:3003/123456789012/transform",
        "TasksTableName": "tasks",
    },
}


def test_endpoints_file_gives_urls_region_and_queue_pairs(tmp_path):
    # Given an endpoints.json as `busline local up` writes it (no TransformDeadLetterQueueUrl)
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps(LOCAL))

    # When reading it
    deployment = resolve(endpoints_file=path, env={})

    # Then URLs, region and the complete queue pairs come out, and it counts as local
    assert (deployment.rest_url, deployment.websocket_url, deployment.aws_endpoint, deployment.region) == (
        "http://127.0.0.1:3000", "ws://127.0.0.1:3001", "http://127.0.0.1:3003", "eu-west-1")
    assert deployment.is_local
    assert [(pair.phase, pair.queue_name, pair.dlq_name) for pair in deployment.queue_pairs()] == [
        ("extract", "extract", "extract-dlq"), ("load", "load", "load-dlq")]
    assert deployment.tasks_table_name() == "tasks"


def test_local_clients_use_the_local_endpoint_and_dummy_credentials(tmp_path):
    # Given a local deployment
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps(LOCAL))
    deployment = from_endpoints_file(path)

    # When making an SQS client
    client = deployment.client("sqs")

    # Then it talks to moto with dummy keys
    assert client.meta.endpoint_url == "http://127.0.0.1:3003"
    assert client.meta.region_name == "eu-west-1"
    assert client._request_signer._credentials.access_key == "testing"


def test_api_url_env_is_used_when_no_file_is_given(tmp_path, monkeypatch):
    # Given no endpoints option but BUSLINE_API_URL and AWS_ENDPOINT_URL in the environment
    monkeypatch.chdir(tmp_path)
    env = {"BUSLINE_API_URL": "https://api.example.com/dev", "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
           "AWS_REGION": "eu-central-1"}

    # When resolving
    deployment = resolve(env=env)

    # Then those are used
    assert (deployment.rest_url, deployment.aws_endpoint, deployment.region, deployment.origin) == (
        "https://api.example.com/dev", "http://127.0.0.1:4566", "eu-central-1", "BUSLINE_API_URL")


def test_default_file_in_working_directory(tmp_path, monkeypatch):
    # Given .busline/endpoints.json in the working directory
    monkeypatch.chdir(tmp_path)
    (tmp_path / DEFAULT_ENDPOINTS_FILE).parent.mkdir()
    (tmp_path / DEFAULT_ENDPOINTS_FILE).write_text(json.dumps(LOCAL))

    # When resolving with nothing else set
    deployment = resolve(env={})

    # Then the default file is read
    assert deployment.rest_url == "http://127.0.0.1:3000"
    assert deployment.origin == f"endpoints file {DEFAULT_ENDPOINTS_FILE}"


def test_nothing_to_go_on_names_every_way_to_fix_it(tmp_path, monkeypatch):
    # Given an empty working directory and environment
    monkeypatch.chdir(tmp_path)

    # When resolving
    with pytest.raises(EndpointsError) as problem:
        resolve(env={})

    # Then the message names the options
    message = str(problem.value)
    assert "busline local up" in message and "--endpoints" in message and "--stack" in message
    assert "BUSLINE_API_URL" in message


def test_broken_or_missing_file_is_named(tmp_path):
    # Given a file that is not JSON
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")

    # When reading it or a missing one
    with pytest.raises(EndpointsError) as not_json:
        resolve(endpoints_file=broken, env={})
    with pytest.raises(EndpointsError) as missing:
        resolve(endpoints_file=tmp_path / "absent.json", env={})

    # Then each error names the file
    assert f"endpoints file {broken} is not valid JSON" in str(not_json.value)
    assert f"endpoints file {tmp_path / 'absent.json'} does not exist" in str(missing.value)


def test_missing_rest_url_is_named(tmp_path):
    # Given a file with no REST URL
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps({"outputs": {}}))

    # When asking for the REST URL
    with pytest.raises(EndpointsError) as problem:
        from_endpoints_file(path).require_rest_url()

    # Then the error says what is missing
    assert "does not say where the REST API is" in str(problem.value)


STACK_OUTPUTS = {
    "RestApiUrl": "https://abc123.execute-api.us-east-1.amazonaws.com/dev/",
    "WebSocketUrl": "wss://def456.execute-api.us-east-1.amazonaws.com/dev",
    "TransformQueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/busline-transform",
    "TransformDeadLetterQueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/busline-transform-dlq",
    "TasksTableName": "busline-dev-tasks",
}


@pytest.fixture
def stubbed_cloudformation(monkeypatch):
    """DescribeStacks answered by botocore's Stubber (checked against the API model); moto's CloudFormation
    needs ~6 s of imports for its first stack, too slow for a unit test."""
    client = boto3.client("cloudformation", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    stubber = Stubber(client)
    real_client = boto3.client
    monkeypatch.setattr(boto3, "client", lambda service, **kwargs: client if service == "cloudformation"
                        else real_client(service, **kwargs))
    with stubber:
        yield stubber


def test_stack_outputs_are_read_with_cloudformation(stubbed_cloudformation):
    # Given a deployed stack with Busline's outputs
    stubbed_cloudformation.add_response(
        "describe_stacks",
        {"Stacks": [{"StackName": "busline-dev", "CreationTime": datetime(2026, 11, 22, tzinfo=UTC),
                     "StackStatus": "CREATE_COMPLETE",
                     "Outputs": [{"OutputKey": key, "OutputValue": value} for key, value in STACK_OUTPUTS.items()]}]},
        {"StackName": "busline-dev"},
    )

    # When resolving --stack
    deployment = resolve(stack="busline-dev", region="us-east-1", env={})

    # Then the URLs and queues come from the outputs, on the real AWS endpoints
    assert deployment.rest_url == "https://abc123.execute-api.us-east-1.amazonaws.com/dev/"
    assert deployment.websocket_url == "wss://def456.execute-api.us-east-1.amazonaws.com/dev"
    assert deployment.aws_endpoint is None and not deployment.is_local
    assert [(pair.phase, pair.queue_name, pair.dlq_name) for pair in deployment.queue_pairs()] == [
        ("transform", "busline-transform", "busline-transform-dlq")]
    assert deployment.tasks_table_name() == "busline-dev-tasks"
    stubbed_cloudformation.assert_no_pending_responses()


def test_unknown_stack_is_named(stubbed_cloudformation):
    # Given CloudFormation answering as it does for a missing stack
    stubbed_cloudformation.add_client_error(
        "describe_stacks", service_error_code="ValidationError", service_message="Stack with id nope does not exist",
        http_status_code=400, expected_params={"StackName": "nope"},
    )

    # When resolving a stack that does not exist
    with pytest.raises(EndpointsError) as problem:
        resolve(stack="nope", region="us-east-1", env={})

    # Then the error names the stack and region and carries AWS's message
    assert str(problem.value) == "stack nope in us-east-1: Stack with id nope does not exist"


def test_busline_endpoints_env_var_reaches_commands(runner, cli_app, deployment):
    # Given BUSLINE_ENDPOINTS instead of --endpoints
    deployment.dead_letter("load", "task-a", chunk=0)

    # When listing DLQs
    result = runner.invoke(cli_app, ["dlq", "list"], env={"BUSLINE_ENDPOINTS": str(deployment.endpoints_file)})

    # Then the file was used
    assert result.exit_code == 0, result.output + result.stderr
    assert "busline-LoadDeadLetterQueue" in result.stdout
