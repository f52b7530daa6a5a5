"""AWS::Events::EventBus and AWS::Events::Rule, created in moto.

moto's PutEvents delivers only to some target kinds, so rule targets are checked here: schedule
rules' functions go to the local scheduler, SNS targets go through a bridge queue (see
SNS_BRIDGE_TYPE), and targets nothing would deliver to are refused by name.
"""

from __future__ import annotations

import json
import re
from typing import Any

from busline.localcloud.model import ProvisionedResource, ProvisionError, ScheduleSpec
from busline.localcloud.provision.context import ProvisionContext, int_values, parse_json, provisioned

_RULE_TARGET_SERVICES = {"sqs", "logs", "events"}  # the target kinds moto's PutEvents delivers to
# moto's PutEvents skips SNS targets, so such a target becomes a hidden queue plus a forwarder
# (started by cloud.py) that publishes each message to the topic; recorded under this type.
SNS_BRIDGE_TYPE = "Busline::Local::SnsBridge"
WHOLE_EVENT_TEMPLATE = "<aws.events.event.json>"


def event_bus(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    name = props.get("Name") or ctx.physical_name(logical_id, 256)
    arn = ctx.client("events").create_event_bus(Name=name)["EventBusArn"]
    return provisioned(logical_id, resource, name, Arn=arn, Name=name)


def rule(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    name = props.get("Name") or ctx.physical_name(logical_id, 64)
    bus = str(props.get("EventBusName", "default")).rsplit("event-bus/", 1)[-1]
    targets: list[dict[str, Any]] = props.get("Targets", [])
    function_targets = [target for target in targets if ":lambda:" in str(target.get("Arn", ""))]
    other_targets = [target for target in targets if target not in function_targets]
    enabled = props.get("State", "ENABLED") == "ENABLED"
    events = ctx.client("events")
    schedule = props.get("ScheduleExpression")
    if schedule:
        if other_targets:
            raise ProvisionError(
                f"{logical_id}: schedule rule target {other_targets[0].get('Id')!r} is not a Lambda function; "
                "the local cloud only runs scheduled functions"
            )
        # The rule itself is harmless in moto; its function targets are run by the local scheduler.
        arn = events.put_rule(
            Name=name, ScheduleExpression=schedule, State="ENABLED" if enabled else "DISABLED", EventBusName=bus
        )["RuleArn"]
        for target in function_targets:
            ctx.model.schedules.append(
                ScheduleSpec(
                    logical_id=logical_id if len(function_targets) == 1 else f"{logical_id}.{target.get('Id')}",
                    function=ctx.function_by_arn(target["Arn"], logical_id),
                    expression=schedule,
                    input=parse_json(target["Input"], f"{logical_id}: Input") if "Input" in target else None,
                    enabled=enabled,
                    rule_arn=arn,
                )
            )
        return provisioned(logical_id, resource, name, Arn=arn)
    if function_targets:
        raise ProvisionError(
            f"{logical_id}: EventBridge rule target {function_targets[0].get('Id')!r} is a Lambda function; "
            "the local cloud delivers rule matches only to SQS queues, log groups and buses — "
            "route the events through an SQS queue"
        )
    if "EventPattern" not in props:
        raise ProvisionError(f"{logical_id}: AWS::Events::Rule needs an EventPattern or a ScheduleExpression")
    pattern = props["EventPattern"]
    rule = {
        "Name": name,
        "EventPattern": pattern if isinstance(pattern, str) else json.dumps(pattern),
        "State": "ENABLED" if enabled else "DISABLED",
        "EventBusName": bus,
    }
    if props.get("Description"):
        rule["Description"] = props["Description"]
    arn = events.put_rule(**rule)["RuleArn"]
    if other_targets:
        moto_targets = [
            _sns_bridge(ctx, logical_id, target) if ":sns:" in str(target.get("Arn", "")) else target
            for target in other_targets
        ]
        response = events.put_targets(
            Rule=name, EventBusName=bus, Targets=[_rule_target(ctx, logical_id, target) for target in moto_targets]
        )
        if response.get("FailedEntryCount"):
            raise ProvisionError(f"{logical_id}: moto refused targets: {response['FailedEntries']}")
    return provisioned(logical_id, resource, name, Arn=arn)


def _sns_bridge(ctx: ProvisionContext, logical_id: str, target: dict[str, Any]) -> dict[str, Any]:
    """Point an SNS target at a hidden queue; cloud.py forwards that queue to the topic."""
    target_id = str(target.get("Id", "target"))
    bridge_id = f"{logical_id}{re.sub(r'[^A-Za-z0-9]', '', target_id)}SnsBridge"
    queue_name = ctx.physical_name(bridge_id, 80)
    url = ctx.client("sqs").create_queue(QueueName=queue_name)["QueueUrl"]
    queue_arn = ctx.arn("sqs", queue_name)
    ctx.model.resources[bridge_id] = ProvisionedResource(
        bridge_id, SNS_BRIDGE_TYPE, url, {"QueueUrl": url, "QueueArn": queue_arn, "TopicArn": str(target["Arn"])}
    )
    return {**target, "Arn": queue_arn}


def _rule_target(ctx: ProvisionContext, logical_id: str, target: dict[str, Any]) -> dict[str, Any]:
    target_id = target.get("Id")
    if "InputPath" in target:
        raise ProvisionError(
            f"{logical_id}: target {target_id!r} uses InputPath, which the local event bus ignores; "
            "use InputTransformer instead"
        )
    service = str(target.get("Arn", "")).split(":")[2] if str(target.get("Arn", "")).count(":") >= 2 else ""
    if service not in _RULE_TARGET_SERVICES:
        raise ProvisionError(
            f"{logical_id}: target {target_id!r} ({target.get('Arn')}) is a {service or 'unknown'} target; "
            "the local event bus only delivers to SQS queues, SNS topics, log groups and event buses"
        )
    converted: dict[str, Any] = {
        key: target[key] for key in ("Id", "Arn", "Input", "SqsParameters", "DeadLetterConfig") if key in target
    }
    if "InputTransformer" in target:
        converted["InputTransformer"] = dict(target["InputTransformer"])
    elif "Input" not in target:
        # moto's default delivery drops the event's "account" (AWS sends the whole event);
        # its whole-event variable keeps every field, plus an extra "ingestion-time".
        converted["InputTransformer"] = {"InputTemplate": WHOLE_EVENT_TEMPLATE}
    if "RetryPolicy" in target:
        converted["RetryPolicy"] = int_values(target["RetryPolicy"])
    return converted
