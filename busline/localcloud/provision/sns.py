"""AWS::SNS::Topic, AWS::SNS::Subscription and AWS::SNS::TopicPolicy, created in moto."""

from __future__ import annotations

import json
from typing import Any

from busline.localcloud.model import ProvisionedResource, ProvisionError
from busline.localcloud.provision.context import ProvisionContext, attribute_text, provisioned, truthy


def topic(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    fifo = truthy(props.get("FifoTopic", False))
    name = props.get("TopicName") or ctx.physical_name(logical_id, 256, suffix=".fifo" if fifo else "")
    attributes = {
        key: attribute_text(props[key])
        for key in ("DisplayName", "FifoTopic", "ContentBasedDeduplication", "KmsMasterKeyId")
        if key in props
    }
    tags = props.get("Tags", [])
    sns = ctx.client("sns")
    arn = sns.create_topic(Name=name, Attributes=attributes, Tags=tags)["TopicArn"]
    for subscription in props.get("Subscription", []):
        _subscribe(ctx, logical_id, arn, subscription.get("Protocol", ""), subscription.get("Endpoint", ""), {})
    return provisioned(logical_id, resource, arn, TopicArn=arn, TopicName=name)


def subscription(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    attributes: dict[str, str] = {
        key: attribute_text(props[key])
        for key in ("RawMessageDelivery", "FilterPolicy", "FilterPolicyScope", "RedrivePolicy", "DeliveryPolicy")
        if key in props
    }
    arn = _subscribe(ctx, logical_id, props["TopicArn"], props.get("Protocol", ""), props.get("Endpoint", ""), attributes)
    return provisioned(logical_id, resource, arn)


def _subscribe(ctx: ProvisionContext, logical_id: str, topic_arn: str, protocol: str, endpoint: str, attributes: dict[str, str]) -> str:
    if protocol == "lambda":
        raise ProvisionError(
            f"{logical_id}: SNS subscription of a Lambda function is not supported by the local cloud; "
            "subscribe an SQS queue"
        )
    response = ctx.client("sns").subscribe(
        TopicArn=topic_arn, Protocol=protocol, Endpoint=endpoint, Attributes=attributes, ReturnSubscriptionArn=True
    )
    return str(response["SubscriptionArn"])


def topic_policy(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    policy = json.dumps(props.get("PolicyDocument", {}))
    for topic_arn in props.get("Topics", []):
        ctx.client("sns").set_topic_attributes(TopicArn=topic_arn, AttributeName="Policy", AttributeValue=policy)
    return provisioned(logical_id, resource, ctx.physical_name(logical_id, 256))
