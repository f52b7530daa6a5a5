"""AWS::Logs::LogGroup, created in moto."""

from __future__ import annotations

from typing import Any

from busline.localcloud.model import ProvisionedResource
from busline.localcloud.provision.context import ProvisionContext, provisioned


def log_group(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    name = props.get("LogGroupName") or ctx.physical_name(logical_id, 512)
    logs = ctx.client("logs")
    logs.create_log_group(logGroupName=name)
    if "RetentionInDays" in props:
        logs.put_retention_policy(logGroupName=name, retentionInDays=int(props["RetentionInDays"]))
    return provisioned(logical_id, resource, name, Arn=ctx.arn("logs", f"log-group:{name}:*"))
