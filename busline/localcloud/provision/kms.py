"""AWS::KMS::Key, created in moto (which stores the key policy but, like all of moto's IAM, does not
enforce it)."""

from __future__ import annotations

import json
from typing import Any

from busline.localcloud.model import ProvisionedResource
from busline.localcloud.provision.context import ProvisionContext, provisioned, truthy


def key(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    kms = ctx.client("kms")
    request: dict[str, Any] = {
        "Description": props.get("Description", ""),
        "KeyUsage": props.get("KeyUsage", "ENCRYPT_DECRYPT"),
        "KeySpec": props.get("KeySpec", "SYMMETRIC_DEFAULT"),
        "Tags": [{"TagKey": tag["Key"], "TagValue": tag["Value"]} for tag in props.get("Tags", [])],
    }
    if "KeyPolicy" in props:
        request["Policy"] = json.dumps(props["KeyPolicy"])
    metadata = kms.create_key(**request)["KeyMetadata"]
    if truthy(props.get("EnableKeyRotation", False)):
        kms.enable_key_rotation(KeyId=metadata["KeyId"])
    return provisioned(logical_id, resource, metadata["KeyId"], Arn=metadata["Arn"], KeyId=metadata["KeyId"])
