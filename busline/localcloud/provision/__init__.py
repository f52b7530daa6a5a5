"""Create a translated CloudFormation template's resources in moto, and describe the rest in a CloudModel.

Data-plane resources (queues, tables, buses, buckets, topics, secrets, parameters, alarms, log
groups) are created for real with boto3 against moto, because moto's own CloudFormation skips or
breaks on several of them. Compute and API resources (functions, event source mappings, API
Gateway) are never created in moto — moto would want Docker — but recorded in the CloudModel for
the runtime, event sources and gateways. IAM roles and policies are recorded as no-ops: moto does
not enforce IAM, so creating them would only suggest a protection that does not exist locally.

One module per AWS service holds its handlers; HANDLERS below is the only place that says which
resource type goes where, so an unsupported type is refused before anything is created.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from busline.localcloud.intrinsics import DEFAULT_ACCOUNT_ID
from busline.localcloud.model import CloudModel, Endpoints, ProvisionError
from busline.localcloud.provision import (
    apigateway,
    apigatewayv2,
    cloudwatch,
    cognito,
    dynamodb,
    events,
    iam,
    kms,
    lambda_,
    logs,
    s3,
    scheduler,
    secretsmanager,
    sns,
    sqs,
    ssm,
)
from busline.localcloud.provision.context import Handler, ProvisionContext, attribute_text, recorded
from busline.localcloud.provision.events import SNS_BRIDGE_TYPE, WHOLE_EVENT_TEMPLATE

__all__ = [
    "DEFAULT_STACK_NAME",
    "HANDLERS",
    "SNS_BRIDGE_TYPE",
    "WHOLE_EVENT_TEMPLATE",
    "Handler",
    "ProvisionContext",
    "dependency_order",
    "provision",
]

DEFAULT_STACK_NAME = "busline"

HANDLERS: dict[str, Handler] = {
    "AWS::SQS::Queue": sqs.queue,
    "AWS::SQS::QueuePolicy": sqs.queue_policy,
    "AWS::DynamoDB::Table": dynamodb.table,
    "AWS::Events::EventBus": events.event_bus,
    "AWS::Events::Rule": events.rule,
    "AWS::S3::Bucket": s3.bucket,
    "AWS::S3::BucketPolicy": s3.bucket_policy,
    "AWS::SNS::Topic": sns.topic,
    "AWS::KMS::Key": kms.key,
    "AWS::SNS::Subscription": sns.subscription,
    "AWS::SNS::TopicPolicy": sns.topic_policy,
    "AWS::SecretsManager::Secret": secretsmanager.secret,
    "AWS::SSM::Parameter": ssm.parameter,
    "AWS::CloudWatch::Alarm": cloudwatch.alarm,
    "AWS::Logs::LogGroup": logs.log_group,
    "AWS::IAM::Role": iam.role,
    "AWS::IAM::Policy": iam.policy,
    "AWS::IAM::ManagedPolicy": iam.managed_policy,
    "AWS::Scheduler::Schedule": scheduler.schedule,
    "AWS::Scheduler::ScheduleGroup": scheduler.schedule_group,
    "AWS::Cognito::UserPool": cognito.user_pool,
    "AWS::Cognito::UserPoolClient": cognito.user_pool_client,
    "AWS::Cognito::UserPoolResourceServer": cognito.resource_server,
    "AWS::Cognito::UserPoolDomain": cognito.user_pool_domain,
    "AWS::Lambda::Function": lambda_.function,
    "AWS::Lambda::EventSourceMapping": lambda_.event_source_mapping,
    "AWS::Lambda::Permission": recorded,
    "AWS::Lambda::LayerVersion": lambda_.layer,
    "AWS::Lambda::EventInvokeConfig": lambda_.event_invoke_config,
    # API Gateway's account-wide CloudWatch role: nothing to set locally, where no stage writes access logs
    "AWS::ApiGateway::Account": recorded,
    "AWS::ApiGateway::RestApi": apigateway.rest_api,
    "AWS::ApiGateway::Deployment": recorded,
    "AWS::ApiGateway::Stage": apigateway.stage,
    "AWS::ApiGatewayV2::Api": apigatewayv2.api,
    "AWS::ApiGatewayV2::Integration": apigatewayv2.integration,
    "AWS::ApiGatewayV2::Route": apigatewayv2.route,
    "AWS::ApiGatewayV2::Authorizer": apigatewayv2.authorizer,
    "AWS::ApiGatewayV2::Stage": apigatewayv2.stage,
    "AWS::ApiGatewayV2::Deployment": recorded,
    # only ever an ordering device (a conditional DependsOn); nothing signals it
    "AWS::CloudFormation::WaitConditionHandle": recorded,
}

# Run after every resource is handled: an API's routes and stage may come in any template order.
_FINISHERS: tuple[Callable[[ProvisionContext], None], ...] = (apigateway.finish, apigatewayv2.finish)


def provision(
    cfn: dict[str, Any],
    endpoints: Endpoints | None,
    parameter_overrides: dict[str, str],
    region: str,
    account_id: str = DEFAULT_ACCOUNT_ID,
    *,
    stack_name: str = DEFAULT_STACK_NAME,
    clients: Callable[[str], Any] | None = None,
) -> CloudModel:
    """Provision `cfn` (already translated from SAM) into the moto server at `endpoints.aws`.

    With `endpoints=None` the resources go wherever boto3 reaches by default, which is what an
    in-process `moto.mock_aws()` intercepts (see busline.localcloud.in_process). `clients(service)`
    may hand out boto3 clients to reuse: creating them is most of the cost of a small template.
    """
    ctx = ProvisionContext(cfn, endpoints, parameter_overrides, region, account_id, stack_name, clients)
    resources: dict[str, Any] = cfn.get("Resources") or {}
    for logical_id, resource in resources.items():
        resource_type = resource.get("Type") if isinstance(resource, dict) else None
        if resource_type not in HANDLERS:
            raise ProvisionError(f"{logical_id}: {resource_type} is not supported by the local cloud")
    for logical_id in dependency_order(resources):
        resource = resources[logical_id]
        condition = resource.get("Condition")
        if condition is not None and not ctx.resolver.condition(condition, logical_id):
            continue
        resource_type = resource["Type"]
        try:
            properties = ctx.resolver.resolve(resource.get("Properties") or {}, logical_id)
            provisioned = HANDLERS[resource_type](ctx, logical_id, resource, properties)
        except ClientError as exc:
            raise ProvisionError(f"{logical_id}: {resource_type}: {exc}") from exc
        except BotoCoreError as exc:
            where = endpoints.aws if endpoints is not None else "the in-process mock"
            raise ProvisionError(f"{logical_id}: {resource_type}: cannot reach moto at {where}: {exc}") from exc
        except KeyError as exc:
            raise ProvisionError(f"{logical_id}: {resource_type} needs the property {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            raise ProvisionError(f"{logical_id}: {resource_type} has an invalid property value: {exc}") from exc
        ctx.model.resources[logical_id] = provisioned
    for finish in _FINISHERS:
        finish(ctx)
    _resolve_outputs(ctx)
    return ctx.model


def dependency_order(resources: dict[str, Any]) -> list[str]:
    """Logical ids so that each comes after everything it Refs, GetAtts, Subs or DependsOn.

    Among resources that are ready at the same time the template's order is kept, which makes the
    provisioning order (and so any error) reproducible.
    """
    depends_on: dict[str, set[str]] = {}
    for logical_id, resource in resources.items():
        needed = set(_references(resource.get("Properties", {}))) | set(_references(resource.get("Condition")))
        explicit = resource.get("DependsOn", [])
        needed |= {explicit} if isinstance(explicit, str) else set(explicit)
        depends_on[logical_id] = {name for name in needed if name in resources and name != logical_id}
    ordered: list[str] = []
    done: set[str] = set()
    while len(ordered) < len(resources):
        ready = [lid for lid in resources if lid not in done and depends_on[lid] <= done]
        if not ready:
            stuck = sorted(lid for lid in resources if lid not in done)
            raise ProvisionError(f"circular dependency between resources: {', '.join(stuck)}")
        for logical_id in ready:
            ordered.append(logical_id)
            done.add(logical_id)
    return ordered


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if len(value) == 1:
            (name, argument), = value.items()
            if name == "Ref" and isinstance(argument, str):
                yield argument
                return
            if name == "Fn::GetAtt":
                target = argument.split(".", 1)[0] if isinstance(argument, str) else argument[0]
                yield str(target)
                return
            if name == "Fn::Sub":
                template, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])
                for variable in re.findall(r"\$\{([^!}][^}]*)\}", str(template)):
                    if variable not in variables:
                        yield variable.split(".", 1)[0]
                yield from _references(variables)
                return
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def _resolve_outputs(ctx: ProvisionContext) -> None:
    for name, output in (ctx.cfn.get("Outputs") or {}).items():
        condition = output.get("Condition")
        if condition is not None and not ctx.resolver.condition(condition, f"output {name}"):
            continue
        value = ctx.resolver.resolve(output.get("Value"), f"output {name}")
        ctx.model.outputs[name] = value if isinstance(value, str) else attribute_text(value)
