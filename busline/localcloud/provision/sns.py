"""AWS::SNS::Topic, AWS::SNS::Subscription and AWS::SNS::TopicPolicy, created in moto.

A `lambda` subscription is created in moto too (filter policies and message structure are moto's) and
recorded as an SnsTrigger; busline.localcloud.notifications runs the function for each message moto lets through.
"""

from __future__ import annotations

import json
from typing import Any

from busline.localcloud.model import ProvisionedResource, ProvisionError, SnsTrigger
from busline.localcloud.provision.context import (
    ProvisionContext,
    attribute_text,
    parse_json,
    provisioned,
    truthy,
)


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
    function = None
    if protocol == "lambda":
        # moto would hand the message to its Docker-only Lambda; busline.localcloud.notifications runs it instead
        function = ctx.function_by_arn(endpoint, logical_id)
        if topic_arn.endswith(".fifo"):
            raise ProvisionError(f"{logical_id}: a FIFO topic cannot have a Lambda subscription (SNS delivers "
                                 "FIFO topics to SQS queues only)")
    response = ctx.client("sns").subscribe(
        TopicArn=topic_arn, Protocol=protocol, Endpoint=endpoint, Attributes=attributes, ReturnSubscriptionArn=True
    )
    subscription_arn = str(response["SubscriptionArn"])
    if function is not None:
        filter_policy = attributes.get("FilterPolicy")
        ctx.model.sns_triggers.append(
            SnsTrigger(
                logical_id=logical_id,
                topic_arn=topic_arn,
                function=function,
                subscription_arn=subscription_arn,
                filter_policy=parse_json(filter_policy, f"{logical_id}: FilterPolicy") if filter_policy else None,
                filter_policy_scope=attributes.get("FilterPolicyScope", "MessageAttributes"),
            )
        )
    return subscription_arn


def topic_policy(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    policy = json.dumps(props.get("PolicyDocument", {}))
    for topic_arn in props.get("Topics", []):
        ctx.client("sns").set_topic_attributes(TopicArn=topic_arn, AttributeName="Policy", AttributeValue=policy)
    return provisioned(logical_id, resource, ctx.physical_name(logical_id, 256))
