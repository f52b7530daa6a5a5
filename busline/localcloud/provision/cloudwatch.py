"""AWS::CloudWatch::Alarm, created in moto (nothing evaluates it locally; it is there to be described)."""

from __future__ import annotations

from typing import Any

from busline.localcloud.model import ProvisionedResource
from busline.localcloud.provision.context import ProvisionContext, provisioned, truthy


def alarm(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    name = props.get("AlarmName") or ctx.physical_name(logical_id, 255)
    request: dict[str, Any] = {"AlarmName": name}
    integer_keys = ("Period", "EvaluationPeriods", "DatapointsToAlarm")
    for key, value in props.items():
        if key == "AlarmName":
            continue
        if key in integer_keys:
            request[key] = int(value)
        elif key == "Threshold":
            request[key] = float(value)
        elif key == "ActionsEnabled":
            request[key] = truthy(value)
        else:
            request[key] = value
    ctx.client("cloudwatch").put_metric_alarm(**request)
    return provisioned(logical_id, resource, name, Arn=ctx.arn("cloudwatch", f"alarm:{name}"))
