"""template.yaml: lint-clean, translatable by SAM, wired the way the app and the local cloud expect."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from busline.localcloud.provision import HANDLERS

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
VENV_BIN = Path(sys.executable).parent

# What the local cloud provisions (its provisioner's type -> handler table); anything else fails `busline local up`.
LOCAL_CLOUD_TYPES = set(HANDLERS)
PHASES = ("Extract", "Transform", "Load")


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return yaml_parse(TEMPLATE.read_text())


@pytest.fixture(scope="module")
def cfn(sam: dict[str, Any], monkeypatch_module: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch_module.setenv("AWS_DEFAULT_REGION", "us-east-1")
    template = json.loads(json.dumps(sam))
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for uri in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(uri), str):
                # the translator wants code in S3; the local cloud rewrites the same way
                assert (REPO / properties[uri]).is_dir(), f"{properties[uri]} is not a folder"
                properties[uri] = f"s3://busline-local-code/{properties[uri]}"
    return transform(template, {}, _NoManagedPolicies())


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def of_type(cfn: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in cfn["Resources"].items() if r["Type"] == resource_type}


def test_cfn_lint_reports_nothing() -> None:
    # Given the template / When cfn-lint checks it
    result = subprocess.run(
        [str(VENV_BIN / "cfn-lint"), "--format", "parseable", str(TEMPLATE)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    # Then there is no error, warning or informational finding
    assert result.stdout.strip() == ""
    assert result.returncode == 0


@pytest.mark.skipif(not (VENV_BIN / "sam").exists() and not shutil.which("sam"), reason="aws-sam-cli not installed")
def test_sam_validate_lint_passes() -> None:
    # Given the SAM CLI (optional dev tool) / When it validates with its linter
    sam_cli = str(VENV_BIN / "sam") if (VENV_BIN / "sam").exists() else "sam"
    result = subprocess.run(
        [sam_cli, "validate", "--lint", "--template-file", str(TEMPLATE)],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"},
    )
    # Then it accepts the template
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_translation_only_produces_types_the_local_cloud_provisions(cfn: dict[str, Any]) -> None:
    # Given the SAM-translated template / Then every resource type is one the local cloud supports
    unsupported = {f"{name}: {r['Type']}" for name, r in cfn["Resources"].items() if r["Type"] not in LOCAL_CLOUD_TYPES}
    assert unsupported == set()
    assert len(of_type(cfn, "AWS::Lambda::Function")) == 10


def test_each_step_function_consumes_its_queue_in_batches_of_chunks(cfn: dict[str, Any]) -> None:
    # Given the event source mappings / Then each SQS step reads its own queue with partial batch failures,
    # extract one source at a time, transform and load up to ten chunks at a time
    mappings = of_type(cfn, "AWS::Lambda::EventSourceMapping")
    assert len(mappings) == 4
    by_function = {m["Properties"]["FunctionName"]["Ref"]: m["Properties"] for m in mappings.values()}
    for phase in PHASES:
        mapping = by_function[f"{phase}Function"]
        assert mapping["EventSourceArn"] == {"Fn::GetAtt": [f"{phase}Queue", "Arn"]}
        assert mapping["BatchSize"] == (1 if phase == "Extract" else 10)
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert by_function["LoadFunction"]["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "LoadMaxConcurrency"}}


def test_progress_function_reads_the_tasks_stream_filtered_with_a_failure_destination(cfn: dict[str, Any]) -> None:
    mapping = cfn["Resources"]["ProgressFunctionTaskChanges"]["Properties"]
    assert mapping["FunctionName"] == {"Ref": "ProgressFunction"}
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["TasksTable", "StreamArn"]}
    assert mapping["StartingPosition"] == "LATEST"
    assert mapping["BatchSize"] == 100
    assert mapping["MaximumRetryAttempts"] == 3
    assert mapping["BisectBatchOnFunctionError"] is True
    patterns = [json.loads(f["Pattern"]) for f in mapping["FilterCriteria"]["Filters"]]
    assert patterns == [{"eventName": ["INSERT", "MODIFY"]}]
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["ProgressFailureQueue", "Arn"]}


def test_api_watchdog_and_websocket_functions_have_their_triggers(cfn: dict[str, Any]) -> None:
    resources = cfn["Resources"]
    # REST: both paths of the RestApi go to ApiFunction
    paths = resources["RestApi"]["Properties"]["Body"]["paths"]
    assert sorted(paths) == ["/", "/{proxy+}"]
    for methods in paths.values():
        uri = methods["x-amazon-apigateway-any-method"]["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
        assert "${ApiFunction.Arn}" in uri
    # Schedule: the watchdog rule targets the watchdog function
    schedules = {n: r for n, r in of_type(cfn, "AWS::Events::Rule").items() if "ScheduleExpression" in r["Properties"]}
    assert list(schedules) == ["WatchdogFunctionTick"]
    assert schedules["WatchdogFunctionTick"]["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["WatchdogFunction", "Arn"]}
    # WebSocket: four routes through the one integration to ConnectionsFunction
    routes = sorted(r["Properties"]["RouteKey"] for r in of_type(cfn, "AWS::ApiGatewayV2::Route").values())
    assert routes == ["$connect", "$default", "$disconnect", "subscribe"]
    integration = resources["WebSocketIntegration"]["Properties"]
    assert integration["IntegrationType"] == "AWS_PROXY"
    assert "${ConnectionsFunction.Arn}" in integration["IntegrationUri"]["Fn::Sub"]
    handlers = {n: r["Properties"]["Handler"] for n, r in of_type(cfn, "AWS::Lambda::Function").items()}
    assert handlers == {
        "ApiFunction": "app.lambda_handler", "ScheduledRunFunction": "scheduled.lambda_handler",
        "InboxFunction": "inbox.lambda_handler",
        "ExtractFunction": "app.lambda_handler",
        "TransformFunction": "app.lambda_handler", "LoadFunction": "app.lambda_handler",
        "ProgressFunction": "stream.lambda_handler", "ConnectionsFunction": "routes.lambda_handler",
        "WatchdogFunction": "watchdog.lambda_handler", "WebSocketAuthorizerFunction": "authorizer.lambda_handler",
    }


def test_every_rest_method_needs_a_cognito_access_token_and_only_the_cors_preflight_is_open(
    cfn: dict[str, Any],
) -> None:
    # Given the REST API's OpenAPI body
    body = cfn["Resources"]["RestApi"]["Properties"]["Body"]
    # Then its one authorizer is the user pool's, and every Lambda method requires it with the two scopes
    scheme = body["components"]["securitySchemes"]["CognitoAuthorizer"]
    assert scheme["x-amazon-apigateway-authorizer"]["type"] == "cognito_user_pools"
    methods = [(method, operation) for ops in body["paths"].values() for method, operation in ops.items()]
    assert len(methods) == 4
    for method, operation in methods:
        if method == "options":
            # the browser's preflight carries no token: answered by API Gateway itself, never the function
            assert operation["x-amazon-apigateway-integration"]["type"] == "mock"
            assert "security" not in operation
        else:
            assert operation["security"] == [{"CognitoAuthorizer": ["aws.cognito.signin.user.admin", "busline/tasks"]}]
    # And the gateway's own 4XX/5XX answers carry the CORS header of the one web origin, so the page can
    # read a 401
    responses = body["x-amazon-apigateway-gateway-responses"]
    for kind in ("DEFAULT_4XX", "DEFAULT_5XX"):
        assert responses[kind]["responseParameters"] == {
            "gatewayresponse.header.Access-Control-Allow-Origin": {"Fn::Sub": "'${WebOrigin}'"}}


def test_the_websocket_connect_route_runs_the_token_authorizer(cfn: dict[str, Any]) -> None:
    # Given the WebSocket API's routes and authorizer
    resources = cfn["Resources"]
    connect = resources["ConnectRoute"]["Properties"]
    authorizer = resources["WebSocketAuthorizer"]["Properties"]
    # Then $connect needs the REQUEST authorizer reading ?token=, and the other routes inherit the connection
    assert (connect["AuthorizationType"], connect["AuthorizerId"]) == ("CUSTOM", {"Ref": "WebSocketAuthorizer"})
    assert authorizer["AuthorizerType"] == "REQUEST"
    assert authorizer["IdentitySource"] == ["route.request.querystring.token"]
    assert "${WebSocketAuthorizerFunction.Arn}" in authorizer["AuthorizerUri"]["Fn::Sub"]


def test_every_step_queue_has_a_dead_letter_queue_with_an_alarm(cfn: dict[str, Any]) -> None:
    resources = cfn["Resources"]
    alarmed = {
        a["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for a in of_type(cfn, "AWS::CloudWatch::Alarm").values()
    }
    for phase in PHASES:
        queue = resources[f"{phase}Queue"]["Properties"]
        assert queue["RedrivePolicy"] == {
            "deadLetterTargetArn": {"Fn::GetAtt": [f"{phase}DeadLetterQueue", "Arn"]},
            "maxReceiveCount": {"Ref": "MaxReceiveCount"},
        }
        assert resources[f"{phase}DeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] == 1209600
        assert f"{phase}DeadLetterQueue" in alarmed
    # and the inbox's, where a dropped file that could not start its task waits
    assert alarmed - {f"{phase}DeadLetterQueue" for phase in PHASES} == {"InboxDeadLetterQueue"}


def test_bus_rules_route_each_event_to_its_queue_with_a_queue_policy(cfn: dict[str, Any]) -> None:
    rules = {n: r["Properties"] for n, r in of_type(cfn, "AWS::Events::Rule").items() if "EventPattern" in r["Properties"]}
    routed = {
        rule["EventPattern"]["detail-type"][0]: (rule["Targets"][0]["Arn"], rule["EventPattern"].get("detail"))
        for rule in rules.values()
    }
    assert routed == {
        "TaskSubmitted": ({"Fn::GetAtt": ["ExtractQueue", "Arn"]}, None),
        "ChunkExtracted": ({"Fn::GetAtt": ["TransformQueue", "Arn"]}, {"phase": ["transform"]}),
        "ChunkTransformed": ({"Fn::GetAtt": ["LoadQueue", "Arn"]}, {"phase": ["load"]}),
        # load's completion (the merge of a task committing "task") and a cancelled task's clean-up
        "PhaseCompleted": ({"Fn::GetAtt": ["LoadQueue", "Arn"]}, {"phase": ["load"]}),
        "TaskCancelled": ({"Fn::GetAtt": ["LoadQueue", "Arn"]}, None),
    }
    assert all(rule["EventBusName"] == {"Ref": "EventBus"} for rule in rules.values())
    policies = {p["Properties"]["Queues"][0]["Ref"] for p in of_type(cfn, "AWS::SQS::QueuePolicy").values()}
    assert policies == {"ExtractQueue", "TransformQueue", "LoadQueue"}
    load_policy = next(p for p in of_type(cfn, "AWS::SQS::QueuePolicy").values() if p["Properties"]["Queues"][0]["Ref"] == "LoadQueue")
    senders = load_policy["Properties"]["PolicyDocument"]["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"]
    assert senders == [{"Fn::GetAtt": [rule, "Arn"]} for rule in ("ChunkTransformedRule", "LoadCompletedRule", "TaskCancelledRule")]


def test_outputs_name_what_the_cli_and_tests_look_up(sam: dict[str, Any]) -> None:
    outputs = set(sam["Outputs"])
    expected = {"RestApiUrl", "WebSocketUrl", "DataBucketName", "TasksTableName", "EventBusName", "NotificationTopicArn"}
    expected |= {f"{phase}{kind}Url" for phase in PHASES for kind in ("Queue", "DeadLetterQueue")}
    assert expected <= outputs


def test_functions_get_the_settings_environment(cfn: dict[str, Any]) -> None:
    functions = of_type(cfn, "AWS::Lambda::Function")
    common = {"TASKS_TABLE", "CONNECTIONS_TABLE", "IDEMPOTENCY_TABLE", "DATA_BUCKET", "EVENT_BUS_NAME",
              "NOTIFICATION_TOPIC_ARN", "FAULTS_PARAMETER", "MAX_RECEIVE_COUNT", "POWERTOOLS_SERVICE_NAME"}
    for name, function in functions.items():
        variables = set(function["Properties"]["Environment"]["Variables"])
        assert common <= variables, name
    assert "DATABASE_SECRET_ARN" in functions["LoadFunction"]["Properties"]["Environment"]["Variables"]
    for name in ("ProgressFunction", "ConnectionsFunction"):
        assert "WEBSOCKET_MANAGEMENT_ENDPOINT" in functions[name]["Properties"]["Environment"]["Variables"]


def test_the_stack_is_hardened_where_it_costs_nothing_to_run(cfn: dict[str, Any]) -> None:
    resources = cfn["Resources"]
    # Given the translated template
    # Then every queue is encrypted at rest with SQS-managed keys
    queues = of_type(cfn, "AWS::SQS::Queue")
    assert len(queues) == 8
    assert {name: queue["Properties"].get("SqsManagedSseEnabled") for name, queue in queues.items()} == {
        name: True for name in queues
    }
    # And the data bucket refuses every request without TLS
    [statement] = resources["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Action"], statement["Condition"]) == (
        "Deny", "s3:*", {"Bool": {"aws:SecureTransport": "false"}})
    # And the tasks table can be restored to any second of the last 35 days
    assert resources["TasksTable"]["Properties"]["PointInTimeRecoverySpecification"] == {
        "PointInTimeRecoveryEnabled": True}
    # And each of the 8 functions and both API stages has a log group made by the stack, with the retention
    # parameter
    groups = {group["Properties"]["LogGroupName"]["Fn::Sub"]: group["Properties"]["RetentionInDays"]
              for group in of_type(cfn, "AWS::Logs::LogGroup").values()}
    functions = of_type(cfn, "AWS::Lambda::Function")
    access_groups = ("/busline/${AWS::StackName}/rest-api-access", "/busline/${AWS::StackName}/websocket-access")
    assert groups == {
        **{f"/aws/lambda/${{{name}}}": {"Ref": "LogRetentionDays"} for name in functions},
        **{name: {"Ref": "LogRetentionDays"} for name in access_groups},
    }
    # And both API stages are throttled by the same two parameters
    limits = {"ThrottlingRateLimit": {"Ref": "ApiThrottleRate"}, "ThrottlingBurstLimit": {"Ref": "ApiThrottleBurst"}}
    [rest_stage] = of_type(cfn, "AWS::ApiGateway::Stage").values()
    [method_settings] = rest_stage["Properties"]["MethodSettings"]
    assert {key: method_settings[key] for key in limits} == limits
    assert resources["WebSocketStage"]["Properties"]["DefaultRouteSettings"] == limits


def test_every_policy_check_skipped_in_the_template_says_why(cfn: dict[str, Any]) -> None:
    # Given the checkov skips in the SAM template's resource Metadata (`make lint` runs checkov)
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse((Path(__file__).resolve().parents[2] / "template.yaml").read_text())
    skips = [
        (name, skip)
        for name, resource in template["Resources"].items()
        for skip in ((resource.get("Metadata") or {}).get("checkov") or {}).get("skip", [])
    ]
    # Then there are 68 of them, each with a reason of at least a sentence
    assert len(skips) == 68
    assert [(name, skip["id"]) for name, skip in skips if len(skip.get("comment", "")) < 40] == []


def test_the_notification_topic_is_encrypted_with_a_key_its_publishers_may_use(cfn: dict[str, Any]) -> None:
    resources = cfn["Resources"]
    # Given the topic and its key
    topic = resources["NotificationTopic"]["Properties"]
    key = resources["NotificationKey"]["Properties"]
    # Then the topic is encrypted with the stack's own rotating key
    assert topic["KmsMasterKeyId"] == {"Ref": "NotificationKey"}
    assert key["EnableKeyRotation"] is True
    # And the key policy names no wildcard action or principal; CloudWatch (this account's alarms only)
    # may encrypt with it
    statements = {statement["Sid"]: statement for statement in key["KeyPolicy"]["Statement"]}
    assert [action for s in statements.values() for action in _as_list(s["Action"]) if "*" in action] == []
    assert [s["Principal"] for s in statements.values() if "*" in json.dumps(s["Principal"])] == []
    assert statements["CloudWatchAlarmsPublish"]["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert statements["CloudWatchAlarmsPublish"]["Condition"] == {
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    }
    # And every function that may publish to the topic may use the key, and no other function may
    publishers, key_users = set(), set()
    for name, role in of_type(cfn, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            # a conditional policy (ReadableBuckets) is Fn::If [condition, policy, AWS::NoValue]
            document = policy["Fn::If"][1] if "Fn::If" in policy else policy
            for statement in document["PolicyDocument"]["Statement"]:
                actions = set(_as_list(statement["Action"]))
                if "sns:Publish" in actions:
                    publishers.add(name)
                if actions & {"kms:Decrypt", "kms:GenerateDataKey"}:
                    assert statement["Resource"] == {"Fn::GetAtt": ["NotificationKey", "Arn"]}, name
                    key_users.add(name)
    assert publishers == key_users == {
        "ExtractFunctionRole",
        "TransformFunctionRole",
        "LoadFunctionRole",
        "WatchdogFunctionRole",
    }


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_the_watchdog_peeks_at_the_dead_letter_queues_and_cannot_delete(cfn: dict[str, Any]) -> None:
    # Given the watchdog's role / Then its only SQS rights are receive, hand back and read attributes
    actions = {
        action
        for policy in cfn["Resources"]["WatchdogFunctionRole"]["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
        if action.startswith("sqs:")
    }
    assert actions == {"sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"}


def test_only_this_accounts_alarms_may_publish_to_the_topic(cfn: dict[str, Any]) -> None:
    [statement] = cfn["Resources"]["NotificationTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_finished_tasks_expire_by_ttl_after_the_retention_parameter(sam: dict[str, Any], cfn: dict[str, Any]) -> None:
    # Given the retention parameter
    parameter = sam["Parameters"]["FinishedTaskRetentionDays"]
    assert (parameter["Type"], parameter["Default"], parameter["MinValue"], parameter["MaxValue"]) == (
        "Number", 90, 1, 3650)
    # Then the tasks table deletes items by their expiresAt (the connections table keeps its own TTL)
    resources = cfn["Resources"]
    for table in ("TasksTable", "ConnectionsTable"):
        assert resources[table]["Properties"]["TimeToLiveSpecification"] == {
            "AttributeName": "expiresAt", "Enabled": True}
    # And every function that may finish a task is told the retention
    functions = of_type(cfn, "AWS::Lambda::Function")
    for name in (*(f"{phase}Function" for phase in PHASES), "WatchdogFunction"):
        variables = functions[name]["Properties"]["Environment"]["Variables"]
        assert variables["FINISHED_TASK_RETENTION_DAYS"] == {"Ref": "FinishedTaskRetentionDays"}, name


def test_step_functions_reserve_concurrency_only_when_the_parameter_asks(
    sam: dict[str, Any], cfn: dict[str, Any],
) -> None:
    # Given the parameter: none reserved by default (a new account's quota would refuse any reservation)
    parameter = sam["Parameters"]["StepReservedConcurrency"]
    assert (parameter["Type"], parameter["Default"], parameter["MinValue"]) == ("Number", 0, 0)
    assert sam["Conditions"]["HasStepReservedConcurrency"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "StepReservedConcurrency"}, "0"]}]}
    # Then the three steps reserve it under that condition, and no other function reserves anything
    functions = of_type(cfn, "AWS::Lambda::Function")
    reserved = {name: f["Properties"].get("ReservedConcurrentExecutions") for name, f in functions.items()}
    conditional = {"Fn::If": ["HasStepReservedConcurrency", {"Ref": "StepReservedConcurrency"}, {"Ref": "AWS::NoValue"}]}
    assert reserved == {name: conditional if name in {f"{p}Function" for p in PHASES} else None for name in functions}


def test_both_api_stages_write_json_access_logs_to_their_own_log_group(cfn: dict[str, Any]) -> None:
    resources = cfn["Resources"]
    # Given the REST stage SAM makes / Then it logs to its group, with the caller's sub among the fields
    [rest_stage] = of_type(cfn, "AWS::ApiGateway::Stage").values()
    rest = rest_stage["Properties"]["AccessLogSetting"]
    assert rest["DestinationArn"] == {"Fn::GetAtt": ["RestApiAccessLogs", "Arn"]}
    assert json.loads(rest["Format"]) == {
        "requestId": "$context.requestId", "requestTime": "$context.requestTime",
        "ip": "$context.identity.sourceIp", "caller": "$context.authorizer.claims.sub",
        "httpMethod": "$context.httpMethod", "resourcePath": "$context.resourcePath", "status": "$context.status",
        "responseLength": "$context.responseLength", "integrationLatency": "$context.integrationLatency",
    }
    # And the WebSocket stage logs every connect, message and disconnect to another group
    websocket = resources["WebSocketStage"]["Properties"]["AccessLogSettings"]
    assert websocket["DestinationArn"] == {"Fn::GetAtt": ["WebSocketAccessLogs", "Arn"]}
    fields = json.loads(websocket["Format"])
    assert {"requestId", "connectionId", "routeKey", "eventType", "status"} <= set(fields)
    assert fields["caller"] == "$context.authorizer.principalId"


def test_the_account_wide_api_gateway_logging_role_is_only_made_when_asked(
    sam: dict[str, Any], cfn: dict[str, Any],
) -> None:
    resources = cfn["Resources"]
    # Given the switch, off by default: the setting is one per account and region
    parameter = sam["Parameters"]["ManageApiGatewayAccountRole"]
    assert (parameter["Default"], parameter["AllowedValues"]) == ("false", ["true", "false"])
    assert sam["Conditions"]["ManageApiGatewayAccount"] == {"Fn::Equals": [{"Ref": "ManageApiGatewayAccountRole"}, "true"]}
    # Then the account setting and its role exist only under that condition
    [(account_name, account)] = of_type(cfn, "AWS::ApiGateway::Account").items()
    assert account["Condition"] == "ManageApiGatewayAccount"
    assert account["Properties"]["CloudWatchRoleArn"] == {"Fn::GetAtt": ["ApiGatewayCloudWatchRole", "Arn"]}
    role = resources["ApiGatewayCloudWatchRole"]
    assert role["Condition"] == "ManageApiGatewayAccount"
    # And the role is API Gateway's, with AWS's managed push policy and nothing else
    [statement] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "apigateway.amazonaws.com"}
    assert role["Properties"]["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"}]
    assert "Policies" not in role["Properties"]
    # And deleting the stack leaves the role the account setting may still name
    assert role["DeletionPolicy"] == "Retain"
    # And both stages come after the setting when the stack makes it (via a handle, since a DependsOn
    # on a resource whose condition is false fails the deploy)
    handle = resources["ApiGatewayAccountReady"]
    assert handle["Metadata"]["AccountSetting"] == {"Fn::If": ["ManageApiGatewayAccount", {"Ref": account_name}, ""]}
    assert resources["RestApi"]["DependsOn"] == "ApiGatewayAccountReady"
    assert resources["WebSocketStage"]["DependsOn"] == "ApiGatewayAccountReady"
