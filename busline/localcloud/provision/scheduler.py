"""AWS::Scheduler::Schedule: created in moto, and run by the local scheduler (Lambda targets only).

Schedules created later through the Scheduler API are found by the scheduler itself (event_sources.py)."""

from __future__ import annotations

from typing import Any

from busline.localcloud.model import ProvisionedResource, ProvisionError, ScheduleSpec
from busline.localcloud.provision.context import ProvisionContext, parse_json, provisioned


def schedule(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    name = props.get("Name") or ctx.physical_name(logical_id, 64)
    target = props.get("Target") or {}
    if ":lambda:" not in str(target.get("Arn", "")):
        raise ProvisionError(
            f"{logical_id}: schedule target {target.get('Arn')!r} is not a Lambda function; "
            "the local cloud only runs scheduled functions"
        )
    request: dict[str, Any] = {
        "Name": name,
        "ScheduleExpression": props["ScheduleExpression"],
        "FlexibleTimeWindow": props.get("FlexibleTimeWindow", {"Mode": "OFF"}),
        "Target": {key: target[key] for key in ("Arn", "RoleArn", "Input") if key in target},
        "State": props.get("State", "ENABLED"),
    }
    request["Target"].setdefault("RoleArn", f"arn:aws:iam::{ctx.account_id}:role/busline-local-scheduler")
    if props.get("GroupName"):
        request["GroupName"] = props["GroupName"]
    if props.get("ScheduleExpressionTimezone"):
        request["ScheduleExpressionTimezone"] = props["ScheduleExpressionTimezone"]
    arn = ctx.client("scheduler").create_schedule(**request)["ScheduleArn"]
    if "Input" in target:
        parse_json(target["Input"], f"{logical_id}: Target.Input")  # refused at start-up, not at the first firing
    ctx.model.schedules.append(
        ScheduleSpec(
            logical_id=logical_id,
            function=ctx.function_by_arn(target["Arn"], logical_id),
            expression=props["ScheduleExpression"],
            input=target.get("Input"),
            enabled=request["State"] == "ENABLED",
            rule_arn=arn,
            service="scheduler",
            name=f"{props.get('GroupName') or 'default'}/{name}",
            timezone=props.get("ScheduleExpressionTimezone") or "UTC",
        )
    )
    return provisioned(logical_id, resource, name, Arn=arn)


def schedule_group(
    ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]
) -> ProvisionedResource:
    name = props.get("Name") or ctx.physical_name(logical_id, 64)
    arn = ctx.client("scheduler").create_schedule_group(Name=name)["ScheduleGroupArn"]
    return provisioned(logical_id, resource, name, Arn=arn)
