"""AWS::Lambda::Function, LayerVersion, EventSourceMapping and EventInvokeConfig: never created in moto (it
would want Docker), recorded in the CloudModel for the runtime, the event sources and the notifications instead."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from busline.localcloud.model import (
    AsyncInvokeConfig,
    FunctionSpec,
    ProvisionedResource,
    ProvisionError,
    SqsMapping,
    StreamMapping,
)
from busline.localcloud.provision.context import (
    ProvisionContext,
    attribute_text,
    parse_json,
    provisioned,
    truthy,
)
from busline.localcloud.template import LOCAL_PATH_KEY


def function(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    local_path = (resource.get("Metadata") or {}).get(LOCAL_PATH_KEY)
    if not local_path:
        raise ProvisionError(
            f"{logical_id}: the local cloud runs only functions whose CodeUri is a local folder "
            f"(got Code {props.get('Code')!r})"
        )
    runtime = str(props.get("Runtime", "python3.11"))
    if not runtime.startswith("python"):
        raise ProvisionError(f"{logical_id}: Runtime {runtime} is not supported by the local cloud (Python only)")
    if "Handler" not in props:
        raise ProvisionError(f"{logical_id}: Handler is required")
    name = props.get("FunctionName") or ctx.physical_name(logical_id, 64)
    arn = ctx.arn("lambda", f"function:{name}")
    memory_mb = int(props.get("MemorySize", 128))
    environment = {
        key: attribute_text(value)
        for key, value in ((props.get("Environment") or {}).get("Variables") or {}).items()
    }
    if ctx.endpoints is not None:
        environment["AWS_ENDPOINT_URL"] = ctx.endpoints.aws
    environment.update(
        {
            "AWS_REGION": ctx.region,
            "AWS_DEFAULT_REGION": ctx.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
            "POWERTOOLS_TRACE_DISABLED": "true",  # there is no X-Ray daemon locally
        }
    )
    reserved = props.get("ReservedConcurrentExecutions")
    ctx.model.functions[logical_id] = FunctionSpec(
        logical_id=logical_id,
        name=name,
        arn=arn,
        handler=str(props["Handler"]),
        code_dir=Path(local_path),
        layer_dirs=[_layer_dir(ctx, logical_id, layer_arn) for layer_arn in props.get("Layers", [])],
        environment=environment,
        timeout_s=float(props.get("Timeout", 3)),
        memory_mb=memory_mb,
        runtime=runtime,
        reserved_concurrency=None if reserved is None else int(reserved),
    )
    dead_letter = (props.get("DeadLetterConfig") or {}).get("TargetArn")
    if dead_letter:
        _require_destination(logical_id, "DeadLetterConfig.TargetArn", str(dead_letter))
        ctx.model.async_invoke.setdefault(logical_id, AsyncInvokeConfig()).dead_letter_arn = str(dead_letter)
    return provisioned(logical_id, resource, name, Arn=arn)


def event_invoke_config(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    """Retries, event age and destinations of the function's asynchronous invocations, kept for
    busline.localcloud.notifications (the local cloud's one asynchronous invoker)."""
    function = ctx.function_by_arn(str(props["FunctionName"]), logical_id)
    config = ctx.model.async_invoke.setdefault(function, AsyncInvokeConfig())
    if "MaximumRetryAttempts" in props:
        config.max_retry_attempts = int(props["MaximumRetryAttempts"])
        if not 0 <= config.max_retry_attempts <= 2:
            raise ProvisionError(f"{logical_id}: MaximumRetryAttempts must be 0, 1 or 2")
    if "MaximumEventAgeInSeconds" in props:
        config.max_event_age_s = int(props["MaximumEventAgeInSeconds"])
        if not 60 <= config.max_event_age_s <= 21600:
            raise ProvisionError(f"{logical_id}: MaximumEventAgeInSeconds must be between 60 and 21600")
    destinations = props.get("DestinationConfig") or {}
    for outcome in ("OnSuccess", "OnFailure"):
        destination = (destinations.get(outcome) or {}).get("Destination")
        if destination:
            _require_destination(logical_id, f"DestinationConfig.{outcome}", str(destination))
            setattr(config, "on_success_arn" if outcome == "OnSuccess" else "on_failure_arn", str(destination))
    return provisioned(logical_id, resource, ctx.physical_name(logical_id, 256))


def _require_destination(logical_id: str, where: str, arn: str) -> None:
    service = arn.split(":")[2] if arn.count(":") >= 5 else ""
    if service not in ("sqs", "sns"):
        raise ProvisionError(
            f"{logical_id}: {where} {arn!r} is not an SQS queue or SNS topic, the destinations the local cloud sends to"
        )


def _layer_dir(ctx: ProvisionContext, logical_id: str, layer_arn: str) -> Path:
    if layer_arn not in ctx.layer_dirs:
        raise ProvisionError(
            f"{logical_id}: layer {layer_arn} is not a layer with local code in this template; "
            "the local cloud cannot download layers"
        )
    return ctx.layer_dirs[layer_arn]


def layer(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    local_path = (resource.get("Metadata") or {}).get(LOCAL_PATH_KEY)
    if not local_path:
        raise ProvisionError(f"{logical_id}: the local cloud needs a layer whose ContentUri is a local folder")
    layer_name = props.get("LayerName") or ctx.physical_name(logical_id, 140)
    arn = ctx.arn("lambda", f"layer:{layer_name}:1")
    ctx.layer_dirs[arn] = Path(local_path)
    return provisioned(logical_id, resource, arn, LayerVersionArn=arn)


def event_source_mapping(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    function = ctx.function_by_arn(str(props.get("FunctionName", "")), logical_id)
    source_arn = str(props.get("EventSourceArn", ""))
    enabled = truthy(props.get("Enabled", True))
    batching_window = float(props.get("MaximumBatchingWindowInSeconds", 0))
    reports_item_failures = "ReportBatchItemFailures" in props.get("FunctionResponseTypes", [])
    uuid = hashlib.sha1(f"{ctx.stack_name}/{logical_id}".encode()).hexdigest()
    mapping_id = f"{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:32]}"
    if source_arn.startswith("arn:aws:sqs:"):
        if props.get("FilterCriteria"):
            raise ProvisionError(f"{logical_id}: FilterCriteria on an SQS mapping is not supported by the local cloud")
        queue = ctx.queue_by_arn(source_arn, logical_id)
        maximum_concurrency = (props.get("ScalingConfig") or {}).get("MaximumConcurrency")
        ctx.model.sqs_mappings.append(
            SqsMapping(
                logical_id=logical_id,
                function=function,
                queue_url=queue.physical_id,
                queue_arn=source_arn,
                batch_size=int(props.get("BatchSize", 10)),
                max_batching_window_s=batching_window,
                report_batch_item_failures=reports_item_failures,
                max_concurrency=None if maximum_concurrency is None else int(maximum_concurrency),
                enabled=enabled,
            )
        )
    elif source_arn.startswith("arn:aws:dynamodb:") and "/stream/" in source_arn:
        on_failure = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        ctx.model.stream_mappings.append(
            StreamMapping(
                logical_id=logical_id,
                function=function,
                table_name=source_arn.split(":table/", 1)[1].split("/stream/", 1)[0],
                stream_arn=source_arn,
                starting_position=str(props.get("StartingPosition", "LATEST")),
                batch_size=int(props.get("BatchSize", 100)),
                max_batching_window_s=batching_window,
                filter_patterns=[
                    parse_json(item["Pattern"], f"{logical_id}: FilterCriteria.Filters[{index}].Pattern")
                    for index, item in enumerate((props.get("FilterCriteria") or {}).get("Filters", []))
                ],
                max_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
                bisect_on_error=truthy(props.get("BisectBatchOnFunctionError", False)),
                on_failure_arn=on_failure,
                report_batch_item_failures=reports_item_failures,
                enabled=enabled,
            )
        )
    else:
        raise ProvisionError(
            f"{logical_id}: event source {source_arn!r} is not supported by the local cloud "
            "(SQS queues and DynamoDB streams only)"
        )
    return provisioned(logical_id, resource, mapping_id, Id=mapping_id)
