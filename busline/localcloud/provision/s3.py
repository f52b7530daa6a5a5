"""AWS::S3::Bucket, created in moto with versioning, CORS, tags and its event notifications;
AWS::S3::BucketPolicy, checked and recorded.

A bucket's NotificationConfiguration is put into moto as S3's PutBucketNotificationConfiguration would take
it; busline.localcloud.notifications delivers what moto then reports, in AWS's shapes. A function target is
also recorded as an S3Trigger, since the local cloud, not moto, runs it.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from busline.localcloud.model import ProvisionedResource, ProvisionError, S3Trigger
from busline.localcloud.provision.context import ProvisionContext, provisioned, truthy

# CloudFormation's notification configuration kinds -> (S3 API list, API target key, CFN target key)
_DESTINATION_KINDS = {
    "LambdaConfigurations": ("LambdaFunctionConfigurations", "LambdaFunctionArn", "Function"),
    "QueueConfigurations": ("QueueConfigurations", "QueueArn", "Queue"),
    "TopicConfigurations": ("TopicConfigurations", "TopicArn", "Topic"),
}
_FILTER_RULE_NAMES = ("prefix", "suffix")


def bucket(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    name = props.get("BucketName") or ctx.physical_name(logical_id, 63, lowercase=True)
    arn = f"arn:aws:s3:::{name}"
    # Checked before the bucket exists: a refused configuration leaves nothing half made, as CloudFormation's
    # rollback would not either.
    notification = _notification_configuration(ctx, logical_id, name, arn, props.get("NotificationConfiguration"))
    s3 = ctx.client("s3")
    if ctx.region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": ctx.region})
    versioning = props.get("VersioningConfiguration")
    if versioning:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning["Status"]})
    cors = props.get("CorsConfiguration")
    if cors:
        s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": [_cors_rule(rule) for rule in cors["CorsRules"]]})
    if props.get("Tags"):
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": props["Tags"]})
    if notification:
        s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration=notification)
    return provisioned(
        logical_id,
        resource,
        name,
        Arn=arn,
        DomainName=f"{name}.s3.amazonaws.com",
        RegionalDomainName=f"{name}.s3.{ctx.region}.amazonaws.com",
        DualStackDomainName=f"{name}.s3.dualstack.{ctx.region}.amazonaws.com",
        WebsiteURL=f"http://{name}.s3-website-{ctx.region}.amazonaws.com",
    )


def _cors_rule(rule: dict[str, Any]) -> dict[str, Any]:
    renamed = {"Id": "ID", "MaxAge": "MaxAgeSeconds", "ExposedHeaders": "ExposeHeaders"}
    return {renamed.get(key, key): (int(value) if key == "MaxAge" else value) for key, value in rule.items()}


def _notification_configuration(
    ctx: ProvisionContext, logical_id: str, bucket_name: str, bucket_arn: str, config: Any
) -> dict[str, Any]:
    """The template's NotificationConfiguration in the S3 API's form, checked as S3 checks it; function
    targets recorded as S3Triggers."""
    if not config:
        return {}
    if not isinstance(config, dict):
        raise ProvisionError(f"{logical_id}: NotificationConfiguration must be an object")
    unknown = sorted(set(config) - {*_DESTINATION_KINDS, "EventBridgeConfiguration"})
    if unknown:
        raise ProvisionError(f"{logical_id}: NotificationConfiguration.{unknown[0]} is not supported by the local cloud")
    api: dict[str, Any] = {}
    checked: list[tuple[str, str, str, str]] = []  # (where, event, prefix, suffix), for the overlap rule
    for kind, (api_kind, api_target, cfn_target) in _DESTINATION_KINDS.items():
        for index, entry in enumerate(config.get(kind) or []):
            where = f"{logical_id}: NotificationConfiguration.{kind}[{index}]"
            target = str(entry[cfn_target])
            event = str(entry["Event"])
            prefix, suffix = _filter_rules(where, entry.get("Filter"))
            if kind == "LambdaConfigurations":
                function = ctx.function_by_arn(target, where)
                _require_s3_invoke_permission(ctx, where, function, bucket_arn)
            elif kind == "QueueConfigurations":
                ctx.queue_by_arn(target, where)
            else:
                _require_topic(ctx, where, target)
            configuration_id = _configuration_id(ctx, logical_id, kind, index)
            if kind == "LambdaConfigurations":
                ctx.model.s3_triggers.append(
                    S3Trigger(logical_id, bucket_name, function, event, prefix, suffix, configuration_id)
                )
            checked.append((where, event, prefix, suffix))
            rules = [{"Name": name, "Value": value} for name, value in (("prefix", prefix), ("suffix", suffix)) if value]
            api_entry: dict[str, Any] = {"Id": configuration_id, api_target: target, "Events": [event]}
            if rules:
                api_entry["Filter"] = {"Key": {"FilterRules": rules}}
            api.setdefault(api_kind, []).append(api_entry)
    _refuse_overlaps(checked)
    event_bridge = config.get("EventBridgeConfiguration")
    if isinstance(event_bridge, dict) and truthy(event_bridge.get("EventBridgeEnabled", True)):
        api["EventBridgeConfiguration"] = {}
    return api


def _filter_rules(where: str, notification_filter: Any) -> tuple[str, str]:
    """(prefix, suffix) of a Filter.S3Key.Rules list; S3 takes each name once, in either case."""
    if not notification_filter:
        return "", ""
    rules = ((notification_filter or {}).get("S3Key") or {}).get("Rules") or []
    found: dict[str, str] = {}
    for rule in rules:
        name = str(rule.get("Name", "")).lower()
        if name not in _FILTER_RULE_NAMES:
            raise ProvisionError(f"{where}: filter rule name {rule.get('Name')!r} must be prefix or suffix")
        if name in found:
            raise ProvisionError(f"{where}: the {name} filter rule is given twice")
        found[name] = str(rule.get("Value", ""))
    return found.get("prefix", ""), found.get("suffix", "")


def _refuse_overlaps(checked: list[tuple[str, str, str, str]]) -> None:
    """S3 refuses two configurations that one event on one key would both match ("Configurations overlap")."""
    for position, (where, event, prefix, suffix) in enumerate(checked):
        for other_where, other_event, other_prefix, other_suffix in checked[position + 1:]:
            if (
                _events_overlap(event, other_event)
                and (prefix.startswith(other_prefix) or other_prefix.startswith(prefix))
                and (suffix.endswith(other_suffix) or other_suffix.endswith(suffix))
            ):
                raise ProvisionError(
                    f"{other_where}: overlaps {where.split(': ', 1)[1]} (same event type, overlapping prefix and "
                    "suffix); S3 refuses such a configuration"
                )


def _events_overlap(first: str, second: str) -> bool:
    def family(event: str) -> str:
        return event.rsplit(":", 1)[0]

    if first == second:
        return True
    wildcard = first.endswith(":*") or second.endswith(":*")
    return wildcard and family(first) == family(second)


def _configuration_id(ctx: ProvisionContext, logical_id: str, kind: str, index: int) -> str:
    # CloudFormation names each configuration with a generated id (base64 of a UUID); a stable one keeps local
    # runs reproducible.
    generated = uuid.uuid5(uuid.NAMESPACE_URL, f"{ctx.stack_name}/{logical_id}/{kind}/{index}")
    return base64.b64encode(str(generated).encode()).decode()


def _require_topic(ctx: ProvisionContext, where: str, topic_arn: str) -> None:
    if not any(res.type == "AWS::SNS::Topic" and res.physical_id == topic_arn for res in ctx.model.resources.values()):
        raise ProvisionError(f"{where}: topic {topic_arn} is not a topic of this template")


def _require_s3_invoke_permission(ctx: ProvisionContext, where: str, function: str, bucket_arn: str) -> None:
    """S3 validates a function destination when the configuration is put: without a Lambda permission for
    s3.amazonaws.com the deployment fails ("Unable to validate the following destination configurations")."""
    for permission_id, resource in (ctx.cfn.get("Resources") or {}).items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Lambda::Permission":
            continue
        condition = resource.get("Condition")
        if condition is not None and not ctx.resolver.condition(condition, permission_id):
            continue
        try:
            props = ctx.resolver.resolve(resource.get("Properties") or {}, permission_id)
            if ctx.function_by_arn(str(props.get("FunctionName", "")), permission_id) != function:
                continue
        except ProvisionError:
            continue  # another function's, or it names a resource not made yet: none this bucket can rely on
        if props.get("Action") not in ("lambda:InvokeFunction", "lambda:*"):
            continue
        if props.get("Principal") != "s3.amazonaws.com":
            continue
        if props.get("SourceArn") not in (None, bucket_arn):
            continue
        if props.get("SourceAccount") not in (None, ctx.account_id):
            continue
        return
    raise ProvisionError(
        f"{where}: no AWS::Lambda::Permission lets s3.amazonaws.com invoke {function}; S3 refuses the "
        "configuration (Unable to validate the following destination configurations)"
    )


def bucket_policy(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    """Recorded, not put into moto: moto enforces bucket policies, and the local AWS endpoint is plain http
    on loopback standing in for AWS's https one, so the usual TLS-only statement (aws:SecureTransport)
    would refuse every request. The document must still be a policy, as CloudFormation would insist."""
    bucket_name = str(props["Bucket"])
    document = props.get("PolicyDocument")
    if not isinstance(document, dict) or not document.get("Statement"):
        raise ProvisionError(f"{logical_id}: PolicyDocument must be a policy with at least one Statement")
    json.dumps(document)  # a value no JSON can carry would be refused by CloudFormation too
    return provisioned(logical_id, resource, bucket_name)
