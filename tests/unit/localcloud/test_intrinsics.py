"""Resolver: intrinsic functions against provisioned resources, and execute-api URLs made local."""

from __future__ import annotations

import pytest

from busline.localcloud.intrinsics import Resolver, resolve_parameters
from busline.localcloud.model import Endpoints, ProvisionedResource, ProvisionError

ENDPOINTS = Endpoints.for_base_port("127.0.0.1", 3000, postgres="postgresql://local")
RESOURCES = {
    "Queue": ProvisionedResource(
        "Queue", "AWS::SQS::Queue", "http://127.0.0.1:3003/123456789012/q",
        {"Arn": "arn:aws:sqs:eu-west-1:123456789012:q", "QueueName": "q"},
    ),
    "Table": ProvisionedResource(
        "Table", "AWS::DynamoDB::Table", "tasks",
        {"Arn": "arn:aws:dynamodb:eu-west-1:123456789012:table/tasks", "StreamArn": "arn:stream"},
    ),
    "Topic": ProvisionedResource("Topic", "AWS::SNS::Topic", "arn:aws:sns:eu-west-1:123456789012:t", {"TopicName": "t"}),
    "WsApi": ProvisionedResource("WsApi", "AWS::ApiGatewayV2::Api", "wsapi12345", {"ApiId": "wsapi12345"}),
    "RestApi": ProvisionedResource("RestApi", "AWS::ApiGateway::RestApi", "restapi123", {}),
}
CONDITIONS = {
    "IsProd": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
    "NotProd": {"Fn::Not": [{"Condition": "IsProd"}]},
    "ProdAndBig": {"Fn::And": [{"Condition": "IsProd"}, {"Fn::Equals": [{"Ref": "Size"}, "big"]}]},
    "ProdOrBig": {"Fn::Or": [{"Condition": "IsProd"}, {"Fn::Equals": [{"Ref": "Size"}, "big"]}]},
}


def make_resolver(env: str = "test", size: str = "big") -> Resolver:
    return Resolver(
        {"Env": env, "Size": size, "Names": ["a", "b"]}, RESOURCES, "eu-west-1", "123456789012",
        stack_name="demo", conditions=CONDITIONS, endpoints=ENDPOINTS,
    )


def test_ref_parameters_resources_and_pseudo_parameters() -> None:
    resolver = make_resolver()
    # Given parameters, resources and pseudo parameters / Then Ref gives each its value
    assert resolver.resolve({"Ref": "Env"}) == "test"
    assert resolver.resolve({"Ref": "Queue"}) == "http://127.0.0.1:3003/123456789012/q"
    assert resolver.resolve({"Ref": "AWS::Region"}) == "eu-west-1"
    assert resolver.resolve({"Ref": "AWS::AccountId"}) == "123456789012"
    assert resolver.resolve({"Ref": "AWS::StackName"}) == "demo"
    assert resolver.resolve({"Ref": "AWS::Partition"}) == "aws"
    assert resolver.resolve({"Ref": "AWS::URLSuffix"}) == "amazonaws.com"


def test_no_value_removes_keys_and_list_items() -> None:
    # Given AWS::NoValue in a mapping and in a list / Then those entries disappear
    value = {"Keep": 1, "Drop": {"Ref": "AWS::NoValue"}, "List": ["x", {"Ref": "AWS::NoValue"}]}
    assert make_resolver().resolve(value) == {"Keep": 1, "List": ["x"]}


def test_get_att_both_forms() -> None:
    resolver = make_resolver()
    assert resolver.resolve({"Fn::GetAtt": ["Queue", "Arn"]}) == "arn:aws:sqs:eu-west-1:123456789012:q"
    assert resolver.resolve({"Fn::GetAtt": "Queue.QueueName"}) == "q"
    assert resolver.resolve({"Fn::GetAtt": ["Table", "StreamArn"]}) == "arn:stream"
    assert resolver.resolve({"Fn::GetAtt": ["Topic", "TopicName"]}) == "t"


def test_get_att_unknown_attribute_names_resource_and_attribute() -> None:
    # When an attribute the local cloud does not know is asked for / Then the error names both
    with pytest.raises(ProvisionError, match=r"Fn: Fn::GetAtt Queue.Nope: AWS::SQS::Queue has no attribute 'Nope'"):
        make_resolver().resolve({"Fn::GetAtt": ["Queue", "Nope"]}, "Fn")


def test_ref_unknown_names_the_resource_being_resolved() -> None:
    with pytest.raises(ProvisionError, match=r"^MyFunction: Ref to 'Missing'"):
        make_resolver().resolve({"Ref": "Missing"}, "MyFunction")


def test_sub_string_form_with_refs_attributes_and_escapes() -> None:
    # Given a Sub string with a parameter, a pseudo parameter, an attribute and an escaped literal
    value = {"Fn::Sub": "${AWS::StackName}-${Env}-${Queue.QueueName}-${!Literal}"}
    # Then each is replaced and the escape becomes a literal ${...}
    assert make_resolver().resolve(value) == "demo-test-q-${Literal}"


def test_sub_list_form_uses_the_variables_first() -> None:
    value = {"Fn::Sub": ["${Name}/${Env}", {"Name": {"Fn::GetAtt": ["Table", "Arn"]}}]}
    assert make_resolver().resolve(value) == "arn:aws:dynamodb:eu-west-1:123456789012:table/tasks/test"


def test_join_select_split() -> None:
    resolver = make_resolver()
    assert resolver.resolve({"Fn::Join": [":", ["a", {"Ref": "Env"}, 3]]}) == "a:test:3"
    assert resolver.resolve({"Fn::Select": [1, {"Ref": "Names"}]}) == "b"
    assert resolver.resolve({"Fn::Split": [",", "x,y,z"]}) == ["x", "y", "z"]
    assert resolver.resolve({"Fn::Select": ["2", {"Fn::Split": ["/", "a/b/c"]}]}) == "c"


def test_select_out_of_range_is_an_error() -> None:
    with pytest.raises(ProvisionError, match=r"Fn::Select index 5 is out of range"):
        make_resolver().resolve({"Fn::Select": [5, ["a"]]}, "Thing")


def test_get_azs_lists_zones_of_the_region() -> None:
    assert make_resolver().resolve({"Fn::GetAZs": ""}) == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]


def test_if_follows_a_condition_on_a_parameter() -> None:
    value = {"Fn::If": ["IsProd", "big-queue", "small-queue"]}
    # Given Env=test the condition is false; given Env=prod it is true
    assert make_resolver(env="test").resolve(value) == "small-queue"
    assert make_resolver(env="prod").resolve(value) == "big-queue"


def test_if_with_no_value_drops_the_property() -> None:
    value = {"Name": {"Fn::If": ["IsProd", "prod-name", {"Ref": "AWS::NoValue"}]}}
    assert make_resolver(env="test").resolve(value) == {}


def test_condition_functions_not_and_or() -> None:
    test_small = make_resolver(env="test", size="small")
    prod_big = make_resolver(env="prod", size="big")
    assert [test_small.condition(name) for name in ("IsProd", "NotProd", "ProdAndBig", "ProdOrBig")] == [
        False, True, False, False,
    ]
    assert [prod_big.condition(name) for name in ("IsProd", "NotProd", "ProdAndBig", "ProdOrBig")] == [
        True, False, True, True,
    ]


def test_undefined_condition_is_an_error() -> None:
    with pytest.raises(ProvisionError, match=r"Thing: condition 'Nope' is not defined"):
        make_resolver().resolve({"Fn::If": ["Nope", 1, 2]}, "Thing")


def test_unknown_intrinsic_names_the_resource() -> None:
    with pytest.raises(ProvisionError, match=r"^Widget: Fn::Transform is not supported by the local cloud"):
        make_resolver().resolve({"Fn::Transform": {"Name": "AWS::Include"}}, "Widget")


def test_import_value_is_a_clear_error() -> None:
    with pytest.raises(ProvisionError, match=r"^Widget: Fn::ImportValue 'shared-vpc'"):
        make_resolver().resolve({"Fn::ImportValue": "shared-vpc"}, "Widget")


def test_execute_api_urls_become_local_gateway_urls() -> None:
    resolver = make_resolver()
    # Given the management URL of the stack's WebSocket API and the URL of its REST API
    ws_url = {"Fn::Sub": "https://${WsApi}.execute-api.${AWS::Region}.amazonaws.com/live"}
    rest_url = {"Fn::Sub": "https://${RestApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/Prod/tasks"}
    clients_url = {"Fn::Join": ["", ["wss://", {"Ref": "WsApi"}, ".execute-api.eu-west-1.amazonaws.com/live"]]}
    # Then they point at the local @connections API, REST gateway and WebSocket gateway
    assert resolver.resolve(ws_url) == "http://127.0.0.1:3004/live"
    assert resolver.resolve(rest_url) == "http://127.0.0.1:3000/Prod/tasks"
    assert resolver.resolve(clients_url) == "ws://127.0.0.1:3001/live"


def test_execute_api_url_of_another_stack_is_left_alone() -> None:
    url = "https://abcdef1234.execute-api.eu-west-1.amazonaws.com/Prod"
    assert make_resolver().resolve(url) == url


def test_parameters_defaults_overrides_and_lists() -> None:
    declared = {
        "Stage": {"Type": "String", "Default": "dev", "AllowedValues": ["dev", "prod"]},
        "Size": {"Type": "Number", "Default": 5},
        "Zones": {"Type": "CommaDelimitedList", "Default": "a, b"},
        "Db": {"Type": "String"},
    }
    values = resolve_parameters(declared, {"Stage": "prod", "Db": "postgresql://x"})
    assert values == {"Stage": "prod", "Size": "5", "Zones": ["a", "b"], "Db": "postgresql://x"}


def test_parameter_errors_name_the_parameter() -> None:
    declared = {"Stage": {"Type": "String", "Default": "dev", "AllowedValues": ["dev"]}, "Db": {"Type": "String"}}
    with pytest.raises(ProvisionError, match=r"parameter 'Db' has no Default; pass it with --param Db=VALUE"):
        resolve_parameters(declared, {})
    with pytest.raises(ProvisionError, match=r"parameter 'Stage': 'qa' is not one of"):
        resolve_parameters(declared, {"Stage": "qa", "Db": "x"})
    with pytest.raises(ProvisionError, match=r"parameter override 'Typo' is not declared"):
        resolve_parameters(declared, {"Typo": "1", "Db": "x"})
