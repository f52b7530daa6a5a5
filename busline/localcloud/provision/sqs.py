"""AWS::SQS::Queue and AWS::SQS::QueuePolicy, created in moto."""

from __future__ import annotations

import json
from typing import Any

from busline.localcloud.model import ProvisionedResource
from busline.localcloud.provision.context import ProvisionContext, attribute_text, provisioned, truthy


def queue(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    fifo = truthy(props.get("FifoQueue", False))
    name = props.get("QueueName") or ctx.physical_name(logical_id, 80, suffix=".fifo" if fifo else "")
    attributes = {
        key: attribute_text(value)
        for key, value in props.items()
        if key not in ("QueueName", "Tags")
    }
    tags = {tag["Key"]: str(tag["Value"]) for tag in props.get("Tags", [])}
    url = ctx.client("sqs").create_queue(QueueName=name, Attributes=attributes, tags=tags)["QueueUrl"]
    arn = ctx.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return provisioned(logical_id, resource, url, Arn=arn, QueueName=name, QueueUrl=url)


def queue_policy(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    policy = json.dumps(props.get("PolicyDocument", {}))
    for queue_url in props.get("Queues", []):
        ctx.client("sqs").set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": policy})
    return provisioned(logical_id, resource, ctx.physical_name(logical_id, 256))
