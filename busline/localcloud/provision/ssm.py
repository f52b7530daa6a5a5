"""AWS::SSM::Parameter, created in moto."""

from __future__ import annotations

from typing import Any

from busline.localcloud.model import ProvisionedResource
from busline.localcloud.provision.context import ProvisionContext, provisioned


def parameter(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    name = props.get("Name") or f"CFN-{ctx.physical_name(logical_id, 1000)}"
    parameter_type = props.get("Type", "String")
    request: dict[str, Any] = {"Name": name, "Value": str(props["Value"]), "Type": parameter_type}
    for key in ("Description", "AllowedPattern", "Tier", "DataType"):
        if key in props:
            request[key] = props[key]
    if props.get("Tags"):
        request["Tags"] = [{"Key": key, "Value": str(value)} for key, value in props["Tags"].items()]
    ctx.client("ssm").put_parameter(**request)
    return provisioned(logical_id, resource, name, Type=parameter_type, Value=str(props["Value"]))
