"""The conformance fixture app (tests/fixtures/localcloud/template.yaml) on a peer that runs Python Lambda
functions itself, for the scenarios that need functions: those fed by event sources and the REST API's.

The data plane (tables, queues, bus, rules, policies) is created by the local cloud's provisioner with
plain boto3 calls against the peer, the calls CloudFormation would make; the functions, their layer, their
event source mappings and the REST API's proxy routes, which the local cloud never creates in moto, are
created through the peer's own Lambda and API Gateway APIs (CreateFunction with a zip, PublishLayerVersion,
CreateEventSourceMapping, CreateRestApi ... CreateDeployment), and from then on the peer delivers itself.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

from busline.localcloud.model import CloudModel, Endpoints, RestRoute
from busline.localcloud.provision import WHOLE_EVENT_TEMPLATE, provision
from busline.localcloud.template import load_and_translate

from .model import Aws

FIXTURE_TEMPLATE = Path(__file__).resolve().parents[1] / "fixtures" / "localcloud" / "template.yaml"
# the stack's parameter the conformance suite overrides, so both peers run the same stack
FIXTURE_PARAMETERS = {"StageName": "fixture"}
# Lambda sets these itself; a CreateFunction that names them is refused
_RUNTIME_VARIABLES_PREFIX = "AWS_"
_LOCAL_ONLY_VARIABLES = {"POWERTOOLS_TRACE_DISABLED"}
FUNCTION_ROLE = "arn:aws:iam::{account}:role/peer-fixture-function"
ACTIVE_TIMEOUT_S = 60


def zipped(folder: Path, under: str = "") -> bytes:
    """A folder's files as a deployment package; a Python layer's files go under `python/` (what
    `sam build` makes of a layer with BuildMethod python3.x, so they land in /opt/python)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, f"{under}{path.relative_to(folder).as_posix()}")
    return buffer.getvalue()


def deploy_fixture(aws: Aws, template: Path = FIXTURE_TEMPLATE) -> dict[str, str]:
    """Deploy the fixture app's data plane, event-source functions and mappings; its outputs."""
    account = aws.client("sts").get_caller_identity()["Account"]
    cfn = load_and_translate(template, aws.region)
    endpoints = Endpoints(host="127.0.0.1", rest="", websocket="", web="", aws=aws.endpoint, management="",
                          postgres="")
    model = provision(cfn, endpoints, dict(FIXTURE_PARAMETERS), aws.region, account, clients=aws.client)
    _plain_rule_targets(aws, model)
    fed = {mapping.function for mapping in model.sqs_mappings} | {mapping.function for mapping in model.stream_mappings}
    proxied = [route for route in model.rest_routes if route.function and route.authorizer is None]
    functions = _deploy_functions(aws, model, account, fed | {route.function for route in proxied})
    _deploy_rest_api(aws, model, proxied, functions, account)
    lambda_ = aws.client("lambda")
    for sqs_mapping in model.sqs_mappings:
        request: dict[str, Any] = {
            "FunctionName": functions[sqs_mapping.function], "EventSourceArn": sqs_mapping.queue_arn,
            "BatchSize": sqs_mapping.batch_size, "Enabled": sqs_mapping.enabled,
            "MaximumBatchingWindowInSeconds": int(sqs_mapping.max_batching_window_s),
        }  # fmt: skip
        if sqs_mapping.report_batch_item_failures:
            request["FunctionResponseTypes"] = ["ReportBatchItemFailures"]
        if sqs_mapping.max_concurrency is not None:
            request["ScalingConfig"] = {"MaximumConcurrency": sqs_mapping.max_concurrency}
        lambda_.create_event_source_mapping(**request)
    for stream_mapping in model.stream_mappings:
        request = {
            "FunctionName": functions[stream_mapping.function], "EventSourceArn": stream_mapping.stream_arn,
            "BatchSize": stream_mapping.batch_size, "Enabled": stream_mapping.enabled,
            "StartingPosition": stream_mapping.starting_position,
            "MaximumRetryAttempts": stream_mapping.max_retry_attempts,
            "BisectBatchOnFunctionError": stream_mapping.bisect_on_error,
        }  # fmt: skip
        if stream_mapping.filter_patterns:
            request["FilterCriteria"] = {"Filters": [{"Pattern": json.dumps(pattern)}
                                                     for pattern in stream_mapping.filter_patterns]}
        if stream_mapping.report_batch_item_failures:
            request["FunctionResponseTypes"] = ["ReportBatchItemFailures"]
        lambda_.create_event_source_mapping(**request)
    return dict(model.outputs)


def _plain_rule_targets(aws: Aws, model: CloudModel) -> None:
    """Give the rule targets the template names without any Input back their plain form.

    The provisioner gives such targets an InputTransformer of the whole event, because moto's default
    delivery drops `account`; the peer gets the target as the template says, and delivers its own default.
    """
    events = aws.client("events")
    for resource in model.resources.values():
        if resource.type != "AWS::Events::Rule":
            continue
        # arn:aws:events:<region>:<account>:rule/[<bus>/]<name>
        path = resource.attributes.get("Arn", "").split(":rule/", 1)[-1]
        bus = path.rsplit("/", 1)[0] if "/" in path else "default"
        targets = events.list_targets_by_rule(Rule=resource.physical_id, EventBusName=bus)["Targets"]
        plain = [{key: value for key, value in target.items() if key != "InputTransformer"} for target in targets
                 if (target.get("InputTransformer") or {}).get("InputTemplate") == WHOLE_EVENT_TEMPLATE
                 and not target["InputTransformer"].get("InputPathsMap")]
        if plain:
            events.put_targets(Rule=resource.physical_id, EventBusName=bus, Targets=plain)


def _deploy_functions(aws: Aws, model: CloudModel, account: str, fed: set[str]) -> dict[str, str]:
    """The functions an event source or the REST API feeds, created in the peer; logical id -> name."""
    lambda_ = aws.client("lambda")
    layers: dict[Path, str] = {}
    names: dict[str, str] = {}
    for logical_id in sorted(fed):
        spec = model.functions[logical_id]
        for folder in spec.layer_dirs:
            if folder not in layers:
                layers[folder] = lambda_.publish_layer_version(
                    LayerName=f"peer-{folder.name}", Content={"ZipFile": zipped(folder, under="python/")},
                    CompatibleRuntimes=[spec.runtime],
                )["LayerVersionArn"]  # fmt: skip
        variables = {key: value for key, value in spec.environment.items()
                     if not key.startswith(_RUNTIME_VARIABLES_PREFIX) and key not in _LOCAL_ONLY_VARIABLES}
        lambda_.create_function(
            FunctionName=spec.name, Runtime=spec.runtime, Role=FUNCTION_ROLE.format(account=account),
            Handler=spec.handler, Code={"ZipFile": zipped(spec.code_dir)}, Timeout=max(1, int(spec.timeout_s)),
            MemorySize=spec.memory_mb, Environment={"Variables": variables},
            Layers=[layers[folder] for folder in spec.layer_dirs],
        )  # fmt: skip
        lambda_.get_waiter("function_active_v2").wait(
            FunctionName=spec.name, WaiterConfig={"Delay": 1, "MaxAttempts": ACTIVE_TIMEOUT_S})
        names[logical_id] = spec.name
    return names


def _deploy_rest_api(aws: Aws, model: CloudModel, routes: list[RestRoute], functions: dict[str, str],
                     account: str) -> None:
    """The first REST API's proxy routes without an authorizer, made through the peer's API Gateway
    (resources, methods, AWS_PROXY integrations, a deployment to the route's stage)."""
    if not routes:
        return
    api_routes = [route for route in routes if route.api_logical_id == routes[0].api_logical_id]
    apigateway = aws.client("apigateway")
    request: dict[str, Any] = {"name": f"peer-{routes[0].api_logical_id}"}
    if api_routes[0].binary_media_types:
        request["binaryMediaTypes"] = api_routes[0].binary_media_types
    api_id = apigateway.create_rest_api(**request)["id"]
    resources = {item["path"]: item["id"] for item in apigateway.get_resources(restApiId=api_id)["items"]}
    for route in api_routes:
        parent = "/"
        for segment in [part for part in route.path.split("/") if part]:
            path = f"{parent.rstrip('/')}/{segment}"
            if path not in resources:
                resources[path] = apigateway.create_resource(restApiId=api_id, parentId=resources[parent],
                                                             pathPart=segment)["id"]
            parent = path
        function_arn = f"arn:aws:lambda:{aws.region}:{account}:function:{functions[route.function]}"
        apigateway.put_method(restApiId=api_id, resourceId=resources[parent], httpMethod=route.method,
                              authorizationType="NONE")
        apigateway.put_integration(
            restApiId=api_id, resourceId=resources[parent], httpMethod=route.method, type="AWS_PROXY",
            integrationHttpMethod="POST",
            uri=f"arn:aws:apigateway:{aws.region}:lambda:path/2015-03-31/functions/{function_arn}/invocations",
        )  # fmt: skip
    apigateway.create_deployment(restApiId=api_id, stageName=api_routes[0].stage)
    # MiniStack routes execute-api calls by Host, as AWS routes by the API's own domain name
    port = aws.endpoint.rsplit(":", 1)[-1]
    aws.rest_url = f"{aws.endpoint}/{api_routes[0].stage}"
    aws.rest_host = f"{api_id}.execute-api.127.0.0.1:{port}"
