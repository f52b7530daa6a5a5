"""AWS::DynamoDB::Table, created in moto with its indexes, stream, TTL and point-in-time recovery."""

from __future__ import annotations

from typing import Any

from busline.localcloud.model import ProvisionedResource, ProvisionError
from busline.localcloud.provision.context import ProvisionContext, int_values, provisioned, truthy


def table(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    for unsupported in ("KinesisStreamSpecification", "ImportSourceSpecification"):
        if unsupported in props:
            raise ProvisionError(f"{logical_id}: {unsupported} of AWS::DynamoDB::Table is not supported by the local cloud")
    name = props.get("TableName") or ctx.physical_name(logical_id, 255)
    billing_mode = props.get("BillingMode", "PROVISIONED")
    request: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props.get("AttributeDefinitions", []),
        "KeySchema": props.get("KeySchema", []),
        "BillingMode": billing_mode,
    }
    if billing_mode == "PROVISIONED":
        if "ProvisionedThroughput" not in props:
            raise ProvisionError(f"{logical_id}: ProvisionedThroughput is required when BillingMode is PROVISIONED")
        request["ProvisionedThroughput"] = int_values(props["ProvisionedThroughput"])
    if props.get("GlobalSecondaryIndexes"):
        request["GlobalSecondaryIndexes"] = [_index(index) for index in props["GlobalSecondaryIndexes"]]
    if props.get("LocalSecondaryIndexes"):
        request["LocalSecondaryIndexes"] = [_index(index) for index in props["LocalSecondaryIndexes"]]
    stream = props.get("StreamSpecification")
    if stream:
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    sse = props.get("SSESpecification")
    if sse:
        request["SSESpecification"] = {
            key: value
            for key, value in {
                "Enabled": truthy(sse.get("SSEEnabled", False)),
                "SSEType": sse.get("SSEType"),
                "KMSMasterKeyId": sse.get("KMSMasterKeyId"),
            }.items()
            if value is not None
        }
    if props.get("Tags"):
        request["Tags"] = props["Tags"]
    for passthrough in ("TableClass", "DeletionProtectionEnabled"):
        if passthrough in props:
            request[passthrough] = props[passthrough]
    dynamodb = ctx.client("dynamodb")
    description = dynamodb.create_table(**request)["TableDescription"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl and truthy(ttl.get("Enabled", False)):
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
        )
    pitr = props.get("PointInTimeRecoverySpecification")
    if pitr and truthy(pitr.get("PointInTimeRecoveryEnabled", False)):
        dynamodb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    attributes = {"Arn": description["TableArn"]}
    if description.get("LatestStreamArn"):
        attributes["StreamArn"] = description["LatestStreamArn"]
    return provisioned(logical_id, resource, name, **attributes)


def _index(index: dict[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {key: index[key] for key in ("IndexName", "KeySchema", "Projection") if key in index}
    if "ProvisionedThroughput" in index:
        converted["ProvisionedThroughput"] = int_values(index["ProvisionedThroughput"])
    return converted
