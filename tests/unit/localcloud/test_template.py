"""load_and_translate: the real SAM transform, with local code folders remembered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from busline.localcloud.model import ProvisionError
from busline.localcloud.template import LOCAL_CODE_BUCKET, LOCAL_PATH_KEY, load_and_translate

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "provision"


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    return load_and_translate(FIXTURES / "sam_events.yaml", "eu-west-1")


def _of_type(cfn: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {lid: res for lid, res in cfn["Resources"].items() if res["Type"] == resource_type}


def test_function_code_points_at_the_local_folder(translated: dict[str, Any]) -> None:
    # Given a SAM function whose CodeUri (from Globals) is a local folder
    # When it is translated
    function = translated["Resources"]["WorkerFunction"]
    # Then its Code is the placeholder S3 location and the absolute folder is remembered
    assert function["Properties"]["Code"] == {"S3Bucket": LOCAL_CODE_BUCKET, "S3Key": "functions"}
    assert function["Metadata"][LOCAL_PATH_KEY] == str(FIXTURES / "functions")
    assert function["Properties"]["Timeout"] == 7
    assert function["Properties"]["MemorySize"] == 256


def test_layers_remember_their_importable_folder(translated: dict[str, Any]) -> None:
    # Given one layer with BuildMethod python3.11 and one without
    layers = _of_type(translated, "AWS::Lambda::LayerVersion")
    by_name = {res["Properties"]["LayerName"]: res for res in layers.values()}
    # Then the built layer is imported from its root, the plain one from <root>/python
    assert len(layers) == 2
    assert by_name["built-layer"]["Metadata"][LOCAL_PATH_KEY] == str(FIXTURES / "layer_built")
    assert by_name["plain-layer"]["Metadata"][LOCAL_PATH_KEY] == str(FIXTURES / "layer_plain" / "python")


def test_sqs_event_becomes_a_mapping_with_scaling_and_response_types(translated: dict[str, Any]) -> None:
    # Given an SQS event with ScalingConfig and ReportBatchItemFailures
    props = translated["Resources"]["WorkerFunctionWork"]["Properties"]
    # Then SAM produced an event source mapping carrying both
    assert translated["Resources"]["WorkerFunctionWork"]["Type"] == "AWS::Lambda::EventSourceMapping"
    assert props["EventSourceArn"] == {"Fn::GetAtt": ["WorkQueue", "Arn"]}
    assert props["BatchSize"] == 7
    assert props["MaximumBatchingWindowInSeconds"] == 2
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["ScalingConfig"] == {"MaximumConcurrency": 4}


def test_dynamodb_event_keeps_filter_criteria(translated: dict[str, Any]) -> None:
    # Given a DynamoDB stream event with two filter patterns
    props = translated["Resources"]["WorkerFunctionChanges"]["Properties"]
    # Then the mapping keeps them as JSON strings, plus retry/bisect/destination settings
    assert props["EventSourceArn"] == {"Fn::GetAtt": ["ChangesTable", "StreamArn"]}
    assert len(props["FilterCriteria"]["Filters"]) == 2
    assert props["FilterCriteria"]["Filters"][1] == {"Pattern": '{"eventName": ["REMOVE"]}'}
    assert props["StartingPosition"] == "TRIM_HORIZON"
    assert props["MaximumRetryAttempts"] == 2
    assert props["BisectBatchOnFunctionError"] is True


def test_api_events_become_an_implicit_rest_api_with_prod_stage(translated: dict[str, Any]) -> None:
    # Given two Api events (one GET, one ANY on a greedy path)
    api = translated["Resources"]["ServerlessRestApi"]
    paths = api["Properties"]["Body"]["paths"]
    # Then the swagger Body has both, and a Prod stage exists
    assert sorted(paths) == ["/items/{id}", "/{proxy+}"]
    assert list(paths["/items/{id}"]) == ["get"]
    assert list(paths["/{proxy+}"]) == ["x-amazon-apigateway-any-method"]
    stages = _of_type(translated, "AWS::ApiGateway::Stage")
    assert [res["Properties"]["StageName"] for res in stages.values()] == ["Prod"]


def test_schedule_event_becomes_a_rule_targeting_the_function(translated: dict[str, Any]) -> None:
    # Given a Schedule event with an Input
    rule = translated["Resources"]["WorkerFunctionTick"]
    # Then it is an Events rule with the expression and one Lambda target
    assert rule["Type"] == "AWS::Events::Rule"
    assert rule["Properties"]["ScheduleExpression"] == "rate(5 minutes)"
    assert len(rule["Properties"]["Targets"]) == 1
    assert rule["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["WorkerFunction", "Arn"]}
    assert rule["Properties"]["Targets"][0]["Input"] == '{"reason": "tick"}'


def test_missing_code_folder_is_an_error_naming_the_function(tmp_path: Path) -> None:
    # Given a function whose CodeUri folder does not exist
    template = tmp_path / "template.yaml"
    template.write_text(
        "Transform: AWS::Serverless-2016-10-31\n"
        "Resources:\n"
        "  Ghost:\n"
        "    Type: AWS::Serverless::Function\n"
        "    Properties: {CodeUri: nowhere/, Handler: app.handler, Runtime: python3.11}\n"
    )
    # When it is translated / Then the error names the function and the folder
    with pytest.raises(ProvisionError, match=r"Ghost: CodeUri 'nowhere/' does not exist"):
        load_and_translate(template, "us-east-1")


def test_translator_errors_are_provision_errors(tmp_path: Path) -> None:
    # Given a SAM function without a Handler (SAM itself refuses it)
    (tmp_path / "code").mkdir()
    template = tmp_path / "template.yaml"
    template.write_text(
        "Transform: AWS::Serverless-2016-10-31\n"
        "Resources:\n"
        "  Broken:\n"
        "    Type: AWS::Serverless::Function\n"
        "    Properties: {CodeUri: code/, Runtime: python3.11, Events: {E: {Type: Nope}}}\n"
    )
    # Then the translator's message comes through with the resource name
    with pytest.raises(ProvisionError, match=r"SAM could not translate .*Broken"):
        load_and_translate(template, "us-east-1")
