"""AWS::IAM::Role, Policy and ManagedPolicy: recorded, never created.

moto does not enforce IAM, so creating them would only suggest a protection that does not exist locally.
"""

from __future__ import annotations

import hashlib
from typing import Any

from busline.localcloud.model import ProvisionedResource
from busline.localcloud.provision.context import ProvisionContext, provisioned


def role(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    name = props.get("RoleName") or ctx.physical_name(logical_id, 64)
    role_id = "AROA" + hashlib.sha1(name.encode()).hexdigest()[:17].upper()
    return provisioned(logical_id, resource, name, Arn=f"arn:aws:iam::{ctx.account_id}:role/{name}", RoleId=role_id)


def policy(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    return provisioned(logical_id, resource, props.get("PolicyName") or ctx.physical_name(logical_id, 128))


def managed_policy(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    name = props.get("ManagedPolicyName") or ctx.physical_name(logical_id, 128)
    arn = f"arn:aws:iam::{ctx.account_id}:policy/{name}"
    return provisioned(logical_id, resource, arn, PolicyArn=arn)
