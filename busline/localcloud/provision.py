"""Create a translated CloudFormation template's resources in moto, and describe the rest in a CloudModel.

Data-plane resources (queues, tables, buses, buckets, topics, secrets, parameters, alarms, log
groups) are created for real with boto3 against the moto server, because moto's own CloudFormation
skips or breaks on several of them. Compute and API resources (functions, event source mappings,
API Gateway) are never created in moto — moto would want Docker — but recorded in the CloudModel for
the runtime, event sources and gateways. IAM roles and policies are recorded as no-ops: moto does
not enforce IAM, so creating them would only suggest a protection that does not exist locally.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from busline.localcloud.intrinsics import DEFAULT_ACCOUNT_ID, Resolver, resolve_parameters
from busline.localcloud.model import (
    CloudModel,
    Endpoints,
    FunctionSpec,
    ProvisionedResource,
    ProvisionError,
    RestRoute,
    ScheduleSpec,
    SqsMapping,
    StreamMapping,
    WsApi,
)
from busline.localcloud.template import LOCAL_PATH_KEY

DEFAULT_STACK_NAME = "busline"
_HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
_LAMBDA_INVOCATION_URI = re.compile(r"functions/(?P<arn>arn:[^/]+:lambda:[^/]+)/invocations")
_RULE_TARGET_SERVICES = {"sqs", "logs", "events"}  # the target kinds moto's PutEvents delivers to
# moto's PutEvents skips SNS targets, so such a target becomes a hidden queue plus a forwarder
# (started by cloud.py) that publishes each message to the topic; recorded under this type.
SNS_BRIDGE_TYPE = "Busline::Local::SnsBridge"
WHOLE_EVENT_TEMPLATE = "<aws.events.event.json>"

Handler = Callable[[str, dict[str, Any], dict[str, Any]], ProvisionedResource]


def provision(
    cfn: dict[str, Any],
    endpoints: Endpoints,
    parameter_overrides: dict[str, str],
    region: str,
    account_id: str = DEFAULT_ACCOUNT_ID,
    *,
    stack_name: str = DEFAULT_STACK_NAME,
) -> CloudModel:
    """Provision `cfn` (already translated from SAM) into the moto server at `endpoints.aws`."""
    return _Provisioner(cfn, endpoints, parameter_overrides, region, account_id, stack_name).run()


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


class _Provisioner:
    def __init__(
        self,
        cfn: dict[str, Any],
        endpoints: Endpoints,
        overrides: dict[str, str],
        region: str,
        account_id: str,
        stack_name: str,
    ) -> None:
        self.cfn = cfn
        self.region = region
        self.account_id = account_id
        self.stack_name = stack_name
        self.endpoints = endpoints
        self.model = CloudModel(region=region, account_id=account_id, endpoints=endpoints)
        self.resolver = Resolver(
            resolve_parameters(cfn.get("Parameters") or {}, overrides),
            self.model.resources,
            region,
            account_id,
            stack_name=stack_name,
            conditions=cfn.get("Conditions"),
            endpoints=endpoints,
            mappings=cfn.get("Mappings"),
        )
        self.session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
        )
        self._clients: dict[str, Any] = {}
        self._layer_dirs: dict[str, Path] = {}  # layer version ARN -> folder for sys.path
        self._rest_stages: dict[str, str] = {}  # RestApi logical id -> stage name
        self._ws_integrations: dict[str, str] = {}  # integration id -> function logical id
        self._ws_routes: list[tuple[str, dict[str, Any]]] = []  # (api logical id, resolved properties)
        self._ws_authorizers: dict[str, tuple[str, list[str]]] = {}  # authorizer id -> (function, sources)
        self._ws_stages: dict[str, str] = {}  # api logical id -> stage name
        self.handlers: dict[str, Handler] = {
            "AWS::SQS::Queue": self._queue,
            "AWS::SQS::QueuePolicy": self._queue_policy,
            "AWS::DynamoDB::Table": self._table,
            "AWS::Events::EventBus": self._event_bus,
            "AWS::Events::Rule": self._rule,
            "AWS::S3::Bucket": self._bucket,
            "AWS::SNS::Topic": self._topic,
            "AWS::SNS::Subscription": self._subscription,
            "AWS::SNS::TopicPolicy": self._topic_policy,
            "AWS::SecretsManager::Secret": self._secret,
            "AWS::SSM::Parameter": self._ssm_parameter,
            "AWS::CloudWatch::Alarm": self._alarm,
            "AWS::Logs::LogGroup": self._log_group,
            "AWS::IAM::Role": self._iam_role,
            "AWS::IAM::Policy": self._iam_policy,
            "AWS::IAM::ManagedPolicy": self._iam_managed_policy,
            "AWS::Scheduler::Schedule": self._scheduler_schedule,
            "AWS::Lambda::Function": self._function,
            "AWS::Lambda::EventSourceMapping": self._event_source_mapping,
            "AWS::Lambda::Permission": self._recorded,
            "AWS::Lambda::LayerVersion": self._layer,
            "AWS::ApiGateway::RestApi": self._rest_api,
            "AWS::ApiGateway::Deployment": self._recorded,
            "AWS::ApiGateway::Stage": self._rest_stage,
            "AWS::ApiGatewayV2::Api": self._ws_api,
            "AWS::ApiGatewayV2::Integration": self._ws_integration,
            "AWS::ApiGatewayV2::Route": self._ws_route,
            "AWS::ApiGatewayV2::Authorizer": self._ws_authorizer,
            "AWS::ApiGatewayV2::Stage": self._ws_stage,
            "AWS::ApiGatewayV2::Deployment": self._recorded,
        }

    # -- driver ---------------------------------------------------------------------------------

    def run(self) -> CloudModel:
        resources: dict[str, Any] = self.cfn.get("Resources") or {}
        for logical_id, resource in resources.items():
            resource_type = resource.get("Type") if isinstance(resource, dict) else None
            if resource_type not in self.handlers:
                raise ProvisionError(f"{logical_id}: {resource_type} is not supported by the local cloud")
        for logical_id in dependency_order(resources):
            resource = resources[logical_id]
            condition = resource.get("Condition")
            if condition is not None and not self.resolver.condition(condition, logical_id):
                continue
            resource_type = resource["Type"]
            try:
                properties = self.resolver.resolve(resource.get("Properties") or {}, logical_id)
                provisioned = self.handlers[resource_type](logical_id, resource, properties)
            except ClientError as exc:
                raise ProvisionError(f"{logical_id}: {resource_type}: {exc}") from exc
            except BotoCoreError as exc:
                raise ProvisionError(f"{logical_id}: {resource_type}: cannot reach moto at {self.endpoints.aws}: {exc}") from exc
            except KeyError as exc:
                raise ProvisionError(f"{logical_id}: {resource_type} needs the property {exc.args[0]!r}") from exc
            except (TypeError, ValueError) as exc:
                raise ProvisionError(f"{logical_id}: {resource_type} has an invalid property value: {exc}") from exc
            self.model.resources[logical_id] = provisioned
        self._finish_rest_routes()
        self._finish_ws_apis()
        self._resolve_outputs()
        return self.model

    def client(self, service: Any) -> Any:  # Any: boto3-stubs only type literal service names
        if service not in self._clients:
            self._clients[service] = self.session.client(service, endpoint_url=self.endpoints.aws)
        return self._clients[service]

    def physical_name(self, logical_id: str, max_length: int, *, lowercase: bool = False, suffix: str = "") -> str:
        # CloudFormation adds a random suffix; a stable name keeps local runs reproducible.
        name = f"{self.stack_name}-{logical_id}"
        if lowercase:
            name = re.sub(r"[^a-z0-9.-]", "-", name.lower())
        return name[: max_length - len(suffix)] + suffix

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account_id}:{resource}"

    def _resource(self, logical_id: str, resource: dict[str, Any], physical_id: str, **attributes: str) -> ProvisionedResource:
        return ProvisionedResource(logical_id, resource["Type"], physical_id, dict(attributes))

    # -- SQS ------------------------------------------------------------------------------------

    def _queue(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        fifo = _truthy(props.get("FifoQueue", False))
        name = props.get("QueueName") or self.physical_name(logical_id, 80, suffix=".fifo" if fifo else "")
        attributes = {
            key: _attribute_text(value)
            for key, value in props.items()
            if key not in ("QueueName", "Tags")
        }
        tags = {tag["Key"]: str(tag["Value"]) for tag in props.get("Tags", [])}
        url = self.client("sqs").create_queue(QueueName=name, Attributes=attributes, tags=tags)["QueueUrl"]
        arn = self.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return self._resource(logical_id, resource, url, Arn=arn, QueueName=name, QueueUrl=url)

    def _queue_policy(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        policy = json.dumps(props.get("PolicyDocument", {}))
        for queue_url in props.get("Queues", []):
            self.client("sqs").set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": policy})
        return self._resource(logical_id, resource, self.physical_name(logical_id, 256))

    # -- DynamoDB -------------------------------------------------------------------------------

    def _table(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        for unsupported in ("KinesisStreamSpecification", "ImportSourceSpecification"):
            if unsupported in props:
                raise ProvisionError(f"{logical_id}: {unsupported} of AWS::DynamoDB::Table is not supported by the local cloud")
        name = props.get("TableName") or self.physical_name(logical_id, 255)
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
            request["ProvisionedThroughput"] = _int_values(props["ProvisionedThroughput"])
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
                    "Enabled": _truthy(sse.get("SSEEnabled", False)),
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
        dynamodb = self.client("dynamodb")
        description = dynamodb.create_table(**request)["TableDescription"]
        ttl = props.get("TimeToLiveSpecification")
        if ttl and _truthy(ttl.get("Enabled", False)):
            dynamodb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
            )
        pitr = props.get("PointInTimeRecoverySpecification")
        if pitr and _truthy(pitr.get("PointInTimeRecoveryEnabled", False)):
            dynamodb.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )
        attributes = {"Arn": description["TableArn"]}
        if description.get("LatestStreamArn"):
            attributes["StreamArn"] = description["LatestStreamArn"]
        return self._resource(logical_id, resource, name, **attributes)

    # -- EventBridge ----------------------------------------------------------------------------

    def _event_bus(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        name = props.get("Name") or self.physical_name(logical_id, 256)
        arn = self.client("events").create_event_bus(Name=name)["EventBusArn"]
        return self._resource(logical_id, resource, name, Arn=arn, Name=name)

    def _rule(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        name = props.get("Name") or self.physical_name(logical_id, 64)
        bus = str(props.get("EventBusName", "default")).rsplit("event-bus/", 1)[-1]
        targets: list[dict[str, Any]] = props.get("Targets", [])
        function_targets = [target for target in targets if ":lambda:" in str(target.get("Arn", ""))]
        other_targets = [target for target in targets if target not in function_targets]
        enabled = props.get("State", "ENABLED") == "ENABLED"
        events = self.client("events")
        schedule = props.get("ScheduleExpression")
        if schedule:
            if other_targets:
                raise ProvisionError(
                    f"{logical_id}: schedule rule target {other_targets[0].get('Id')!r} is not a Lambda function; "
                    "the local cloud only runs scheduled functions"
                )
            # The rule itself is harmless in moto; its function targets are run by the local scheduler.
            arn = events.put_rule(
                Name=name, ScheduleExpression=schedule, State="ENABLED" if enabled else "DISABLED", EventBusName=bus
            )["RuleArn"]
            for target in function_targets:
                self.model.schedules.append(
                    ScheduleSpec(
                        logical_id=logical_id if len(function_targets) == 1 else f"{logical_id}.{target.get('Id')}",
                        function=self._function_by_arn(target["Arn"], logical_id),
                        expression=schedule,
                        input=_parse_json(target["Input"], f"{logical_id}: Input") if "Input" in target else None,
                        enabled=enabled,
                        rule_arn=arn,
                    )
                )
            return self._resource(logical_id, resource, name, Arn=arn)
        if function_targets:
            raise ProvisionError(
                f"{logical_id}: EventBridge rule target {function_targets[0].get('Id')!r} is a Lambda function; "
                "the local cloud delivers rule matches only to SQS queues, log groups and buses — "
                "route the events through an SQS queue"
            )
        if "EventPattern" not in props:
            raise ProvisionError(f"{logical_id}: AWS::Events::Rule needs an EventPattern or a ScheduleExpression")
        pattern = props["EventPattern"]
        rule = {
            "Name": name,
            "EventPattern": pattern if isinstance(pattern, str) else json.dumps(pattern),
            "State": "ENABLED" if enabled else "DISABLED",
            "EventBusName": bus,
        }
        if props.get("Description"):
            rule["Description"] = props["Description"]
        arn = events.put_rule(**rule)["RuleArn"]
        if other_targets:
            moto_targets = [
                self._sns_bridge(logical_id, target) if ":sns:" in str(target.get("Arn", "")) else target
                for target in other_targets
            ]
            response = events.put_targets(
                Rule=name, EventBusName=bus, Targets=[self._rule_target(logical_id, target) for target in moto_targets]
            )
            if response.get("FailedEntryCount"):
                raise ProvisionError(f"{logical_id}: moto refused targets: {response['FailedEntries']}")
        return self._resource(logical_id, resource, name, Arn=arn)

    def _sns_bridge(self, logical_id: str, target: dict[str, Any]) -> dict[str, Any]:
        """Point an SNS target at a hidden queue; cloud.py forwards that queue to the topic."""
        target_id = str(target.get("Id", "target"))
        bridge_id = f"{logical_id}{re.sub(r'[^A-Za-z0-9]', '', target_id)}SnsBridge"
        queue_name = self.physical_name(bridge_id, 80)
        url = self.client("sqs").create_queue(QueueName=queue_name)["QueueUrl"]
        queue_arn = self.arn("sqs", queue_name)
        self.model.resources[bridge_id] = ProvisionedResource(
            bridge_id, SNS_BRIDGE_TYPE, url, {"QueueUrl": url, "QueueArn": queue_arn, "TopicArn": str(target["Arn"])}
        )
        return {**target, "Arn": queue_arn}

    def _rule_target(self, logical_id: str, target: dict[str, Any]) -> dict[str, Any]:
        target_id = target.get("Id")
        if "InputPath" in target:
            raise ProvisionError(
                f"{logical_id}: target {target_id!r} uses InputPath, which the local event bus ignores; "
                "use InputTransformer instead"
            )
        service = str(target.get("Arn", "")).split(":")[2] if str(target.get("Arn", "")).count(":") >= 2 else ""
        if service not in _RULE_TARGET_SERVICES:
            raise ProvisionError(
                f"{logical_id}: target {target_id!r} ({target.get('Arn')}) is a {service or 'unknown'} target; "
                "the local event bus only delivers to SQS queues, SNS topics, log groups and event buses"
            )
        converted: dict[str, Any] = {
            key: target[key] for key in ("Id", "Arn", "Input", "SqsParameters", "DeadLetterConfig") if key in target
        }
        if "InputTransformer" in target:
            converted["InputTransformer"] = dict(target["InputTransformer"])
        elif "Input" not in target:
            # moto's default delivery drops the event's "account" (AWS sends the whole event);
            # its whole-event variable keeps every field, plus an extra "ingestion-time".
            converted["InputTransformer"] = {"InputTemplate": WHOLE_EVENT_TEMPLATE}
        if "RetryPolicy" in target:
            converted["RetryPolicy"] = _int_values(target["RetryPolicy"])
        return converted

    # -- S3 -------------------------------------------------------------------------------------

    def _bucket(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        if props.get("NotificationConfiguration"):
            raise ProvisionError(
                f"{logical_id}: NotificationConfiguration of AWS::S3::Bucket is not supported by the local cloud"
            )
        name = props.get("BucketName") or self.physical_name(logical_id, 63, lowercase=True)
        s3 = self.client("s3")
        if self.region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": self.region})
        versioning = props.get("VersioningConfiguration")
        if versioning:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning["Status"]})
        cors = props.get("CorsConfiguration")
        if cors:
            s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": [_cors_rule(rule) for rule in cors["CorsRules"]]})
        if props.get("Tags"):
            s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": props["Tags"]})
        return self._resource(
            logical_id,
            resource,
            name,
            Arn=f"arn:aws:s3:::{name}",
            DomainName=f"{name}.s3.amazonaws.com",
            RegionalDomainName=f"{name}.s3.{self.region}.amazonaws.com",
            DualStackDomainName=f"{name}.s3.dualstack.{self.region}.amazonaws.com",
            WebsiteURL=f"http://{name}.s3-website-{self.region}.amazonaws.com",
        )

    # -- SNS ------------------------------------------------------------------------------------

    def _topic(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        fifo = _truthy(props.get("FifoTopic", False))
        name = props.get("TopicName") or self.physical_name(logical_id, 256, suffix=".fifo" if fifo else "")
        attributes = {
            key: _attribute_text(props[key])
            for key in ("DisplayName", "FifoTopic", "ContentBasedDeduplication", "KmsMasterKeyId")
            if key in props
        }
        tags = props.get("Tags", [])
        sns = self.client("sns")
        arn = sns.create_topic(Name=name, Attributes=attributes, Tags=tags)["TopicArn"]
        for subscription in props.get("Subscription", []):
            self._subscribe(logical_id, arn, subscription.get("Protocol", ""), subscription.get("Endpoint", ""), {})
        return self._resource(logical_id, resource, arn, TopicArn=arn, TopicName=name)

    def _subscription(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        attributes: dict[str, str] = {
            key: _attribute_text(props[key])
            for key in ("RawMessageDelivery", "FilterPolicy", "FilterPolicyScope", "RedrivePolicy", "DeliveryPolicy")
            if key in props
        }
        arn = self._subscribe(logical_id, props["TopicArn"], props.get("Protocol", ""), props.get("Endpoint", ""), attributes)
        return self._resource(logical_id, resource, arn)

    def _subscribe(self, logical_id: str, topic_arn: str, protocol: str, endpoint: str, attributes: dict[str, str]) -> str:
        if protocol == "lambda":
            raise ProvisionError(
                f"{logical_id}: SNS subscription of a Lambda function is not supported by the local cloud; "
                "subscribe an SQS queue"
            )
        response = self.client("sns").subscribe(
            TopicArn=topic_arn, Protocol=protocol, Endpoint=endpoint, Attributes=attributes, ReturnSubscriptionArn=True
        )
        return str(response["SubscriptionArn"])

    def _topic_policy(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        policy = json.dumps(props.get("PolicyDocument", {}))
        for topic_arn in props.get("Topics", []):
            self.client("sns").set_topic_attributes(TopicArn=topic_arn, AttributeName="Policy", AttributeValue=policy)
        return self._resource(logical_id, resource, self.physical_name(logical_id, 256))

    # -- Secrets Manager, SSM, CloudWatch, Logs -------------------------------------------------

    def _secret(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        name = props.get("Name") or self.physical_name(logical_id, 512)
        secrets = self.client("secretsmanager")
        if "SecretString" in props:
            value = str(props["SecretString"])
        elif "GenerateSecretString" in props:
            value = self._generated_secret(logical_id, props["GenerateSecretString"])
        else:
            value = secrets.get_random_password()["RandomPassword"]
        request: dict[str, Any] = {"Name": name, "SecretString": value}
        if props.get("Description"):
            request["Description"] = props["Description"]
        if props.get("Tags"):
            request["Tags"] = props["Tags"]
        arn = secrets.create_secret(**request)["ARN"]
        return self._resource(logical_id, resource, arn, Id=arn)

    def _generated_secret(self, logical_id: str, spec: dict[str, Any]) -> str:
        options = {
            key: (int(spec[key]) if key == "PasswordLength" else spec[key] if key == "ExcludeCharacters" else _truthy(spec[key]))
            for key in (
                "PasswordLength", "ExcludeCharacters", "ExcludeNumbers", "ExcludePunctuation",
                "ExcludeUppercase", "ExcludeLowercase", "IncludeSpace", "RequireEachIncludedType",
            )
            if key in spec
        }
        password = self.client("secretsmanager").get_random_password(**options)["RandomPassword"]
        template_text = spec.get("SecretStringTemplate")
        key = spec.get("GenerateStringKey")
        if template_text is None and key is None:
            return str(password)
        if template_text is None or key is None:
            raise ProvisionError(
                f"{logical_id}: GenerateSecretString needs both SecretStringTemplate and GenerateStringKey, or neither"
            )
        document = _parse_json(template_text, f"{logical_id}: SecretStringTemplate")
        document[key] = password
        return json.dumps(document)

    def _ssm_parameter(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        name = props.get("Name") or f"CFN-{self.physical_name(logical_id, 1000)}"
        parameter_type = props.get("Type", "String")
        request: dict[str, Any] = {"Name": name, "Value": str(props["Value"]), "Type": parameter_type}
        for key in ("Description", "AllowedPattern", "Tier", "DataType"):
            if key in props:
                request[key] = props[key]
        if props.get("Tags"):
            request["Tags"] = [{"Key": key, "Value": str(value)} for key, value in props["Tags"].items()]
        self.client("ssm").put_parameter(**request)
        return self._resource(logical_id, resource, name, Type=parameter_type, Value=str(props["Value"]))

    def _alarm(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        name = props.get("AlarmName") or self.physical_name(logical_id, 255)
        request: dict[str, Any] = {"AlarmName": name}
        integer_keys = ("Period", "EvaluationPeriods", "DatapointsToAlarm")
        for key, value in props.items():
            if key == "AlarmName":
                continue
            if key in integer_keys:
                request[key] = int(value)
            elif key == "Threshold":
                request[key] = float(value)
            elif key == "ActionsEnabled":
                request[key] = _truthy(value)
            else:
                request[key] = value
        self.client("cloudwatch").put_metric_alarm(**request)
        return self._resource(logical_id, resource, name, Arn=self.arn("cloudwatch", f"alarm:{name}"))

    def _log_group(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        name = props.get("LogGroupName") or self.physical_name(logical_id, 512)
        logs = self.client("logs")
        logs.create_log_group(logGroupName=name)
        if "RetentionInDays" in props:
            logs.put_retention_policy(logGroupName=name, retentionInDays=int(props["RetentionInDays"]))
        return self._resource(logical_id, resource, name, Arn=self.arn("logs", f"log-group:{name}:*"))

    # -- IAM: recorded, not created (see module docstring) -------------------------------------

    def _iam_role(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        name = props.get("RoleName") or self.physical_name(logical_id, 64)
        role_id = "AROA" + hashlib.sha1(name.encode()).hexdigest()[:17].upper()
        return self._resource(logical_id, resource, name, Arn=f"arn:aws:iam::{self.account_id}:role/{name}", RoleId=role_id)

    def _iam_policy(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        return self._resource(logical_id, resource, props.get("PolicyName") or self.physical_name(logical_id, 128))

    def _iam_managed_policy(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        name = props.get("ManagedPolicyName") or self.physical_name(logical_id, 128)
        arn = f"arn:aws:iam::{self.account_id}:policy/{name}"
        return self._resource(logical_id, resource, arn, PolicyArn=arn)

    # -- EventBridge Scheduler ------------------------------------------------------------------

    def _scheduler_schedule(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        name = props.get("Name") or self.physical_name(logical_id, 64)
        target = props.get("Target") or {}
        if ":lambda:" not in str(target.get("Arn", "")):
            raise ProvisionError(
                f"{logical_id}: schedule target {target.get('Arn')!r} is not a Lambda function; "
                "the local cloud only runs scheduled functions"
            )
        request: dict[str, Any] = {
            "Name": name,
            "ScheduleExpression": props["ScheduleExpression"],
            "FlexibleTimeWindow": props.get("FlexibleTimeWindow", {"Mode": "OFF"}),
            "Target": {key: target[key] for key in ("Arn", "RoleArn", "Input") if key in target},
            "State": props.get("State", "ENABLED"),
        }
        request["Target"].setdefault("RoleArn", f"arn:aws:iam::{self.account_id}:role/busline-local-scheduler")
        if props.get("GroupName"):
            request["GroupName"] = props["GroupName"]
        arn = self.client("scheduler").create_schedule(**request)["ScheduleArn"]
        self.model.schedules.append(
            ScheduleSpec(
                logical_id=logical_id,
                function=self._function_by_arn(target["Arn"], logical_id),
                expression=props["ScheduleExpression"],
                input=_parse_json(target["Input"], f"{logical_id}: Target.Input") if "Input" in target else None,
                enabled=request["State"] == "ENABLED",
                rule_arn=arn,
            )
        )
        return self._resource(logical_id, resource, name, Arn=arn)

    # -- Lambda ---------------------------------------------------------------------------------

    def _function(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        local_path = (resource.get("Metadata") or {}).get(LOCAL_PATH_KEY)
        if not local_path:
            raise ProvisionError(
                f"{logical_id}: the local cloud runs only functions whose CodeUri is a local folder "
                f"(got Code {props.get('Code')!r})"
            )
        runtime = str(props.get("Runtime", "python3.11"))
        if not runtime.startswith("python"):
            raise ProvisionError(f"{logical_id}: Runtime {runtime} is not supported by the local cloud (Python only)")
        if "Handler" not in props:
            raise ProvisionError(f"{logical_id}: Handler is required")
        name = props.get("FunctionName") or self.physical_name(logical_id, 64)
        arn = self.arn("lambda", f"function:{name}")
        memory_mb = int(props.get("MemorySize", 128))
        environment = {
            key: _attribute_text(value)
            for key, value in ((props.get("Environment") or {}).get("Variables") or {}).items()
        }
        environment.update(
            {
                "AWS_ENDPOINT_URL": self.endpoints.aws,
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_LAMBDA_FUNCTION_NAME": name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
                "POWERTOOLS_TRACE_DISABLED": "true",  # there is no X-Ray daemon locally
            }
        )
        reserved = props.get("ReservedConcurrentExecutions")
        self.model.functions[logical_id] = FunctionSpec(
            logical_id=logical_id,
            name=name,
            arn=arn,
            handler=str(props["Handler"]),
            code_dir=Path(local_path),
            layer_dirs=[self._layer_dir(logical_id, layer_arn) for layer_arn in props.get("Layers", [])],
            environment=environment,
            timeout_s=float(props.get("Timeout", 3)),
            memory_mb=memory_mb,
            runtime=runtime,
            reserved_concurrency=None if reserved is None else int(reserved),
        )
        return self._resource(logical_id, resource, name, Arn=arn)

    def _layer_dir(self, logical_id: str, layer_arn: str) -> Path:
        if layer_arn not in self._layer_dirs:
            raise ProvisionError(
                f"{logical_id}: layer {layer_arn} is not a layer with local code in this template; "
                "the local cloud cannot download layers"
            )
        return self._layer_dirs[layer_arn]

    def _layer(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        local_path = (resource.get("Metadata") or {}).get(LOCAL_PATH_KEY)
        if not local_path:
            raise ProvisionError(f"{logical_id}: the local cloud needs a layer whose ContentUri is a local folder")
        layer_name = props.get("LayerName") or self.physical_name(logical_id, 140)
        arn = self.arn("lambda", f"layer:{layer_name}:1")
        self._layer_dirs[arn] = Path(local_path)
        return self._resource(logical_id, resource, arn, LayerVersionArn=arn)

    def _event_source_mapping(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        function = self._function_by_arn(str(props.get("FunctionName", "")), logical_id)
        source_arn = str(props.get("EventSourceArn", ""))
        enabled = _truthy(props.get("Enabled", True))
        batching_window = float(props.get("MaximumBatchingWindowInSeconds", 0))
        reports_item_failures = "ReportBatchItemFailures" in props.get("FunctionResponseTypes", [])
        uuid = hashlib.sha1(f"{self.stack_name}/{logical_id}".encode()).hexdigest()
        mapping_id = f"{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:32]}"
        if source_arn.startswith("arn:aws:sqs:"):
            if props.get("FilterCriteria"):
                raise ProvisionError(f"{logical_id}: FilterCriteria on an SQS mapping is not supported by the local cloud")
            queue = self._queue_by_arn(source_arn, logical_id)
            maximum_concurrency = (props.get("ScalingConfig") or {}).get("MaximumConcurrency")
            self.model.sqs_mappings.append(
                SqsMapping(
                    logical_id=logical_id,
                    function=function,
                    queue_url=queue.physical_id,
                    queue_arn=source_arn,
                    batch_size=int(props.get("BatchSize", 10)),
                    max_batching_window_s=batching_window,
                    report_batch_item_failures=reports_item_failures,
                    max_concurrency=None if maximum_concurrency is None else int(maximum_concurrency),
                    enabled=enabled,
                )
            )
        elif source_arn.startswith("arn:aws:dynamodb:") and "/stream/" in source_arn:
            on_failure = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
            self.model.stream_mappings.append(
                StreamMapping(
                    logical_id=logical_id,
                    function=function,
                    table_name=source_arn.split(":table/", 1)[1].split("/stream/", 1)[0],
                    stream_arn=source_arn,
                    starting_position=str(props.get("StartingPosition", "LATEST")),
                    batch_size=int(props.get("BatchSize", 100)),
                    max_batching_window_s=batching_window,
                    filter_patterns=[
                        _parse_json(item["Pattern"], f"{logical_id}: FilterCriteria.Filters[{index}].Pattern")
                        for index, item in enumerate((props.get("FilterCriteria") or {}).get("Filters", []))
                    ],
                    max_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
                    bisect_on_error=_truthy(props.get("BisectBatchOnFunctionError", False)),
                    on_failure_arn=on_failure,
                    report_batch_item_failures=reports_item_failures,
                    enabled=enabled,
                )
            )
        else:
            raise ProvisionError(
                f"{logical_id}: event source {source_arn!r} is not supported by the local cloud "
                "(SQS queues and DynamoDB streams only)"
            )
        return self._resource(logical_id, resource, mapping_id, Id=mapping_id)

    def _function_by_arn(self, reference: str, context: str) -> str:
        """The logical id of the function a name, ARN or qualified ARN refers to."""
        name = reference.split(":function:", 1)[1].split(":", 1)[0] if ":function:" in reference else reference
        for spec in self.model.functions.values():
            if spec.name == name:
                return spec.logical_id
        raise ProvisionError(f"{context}: {reference!r} is not a function of this template")

    def _queue_by_arn(self, arn: str, context: str) -> ProvisionedResource:
        for resource in self.model.resources.values():
            if resource.type == "AWS::SQS::Queue" and resource.attributes.get("Arn") == arn:
                return resource
        raise ProvisionError(f"{context}: queue {arn} is not a queue of this template")

    def _recorded(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        return self._resource(logical_id, resource, self.physical_name(logical_id, 256))

    # -- API Gateway REST -----------------------------------------------------------------------

    def _api_id(self, logical_id: str) -> str:
        return hashlib.sha1(f"{self.stack_name}/{logical_id}".encode()).hexdigest()[:10]

    def _rest_api(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        body = props.get("Body")
        if not isinstance(body, dict):
            raise ProvisionError(
                f"{logical_id}: the local cloud needs the API definition inline (SAM's Body); "
                "BodyS3Location and ApiGateway::Resource/Method resources are not supported"
            )
        api_id = self._api_id(logical_id)
        for path, operations in (body.get("paths") or {}).items():
            for method_key, operation in (operations or {}).items():
                if method_key == "x-amazon-apigateway-any-method":
                    method = "ANY"
                elif method_key.lower() in _HTTP_METHODS:
                    method = method_key.upper()
                else:
                    continue  # path-level "parameters" and other extensions
                integration = (operation or {}).get("x-amazon-apigateway-integration") or {}
                if integration.get("type") == "mock":
                    continue  # SAM's CORS preflight; the gateway answers OPTIONS itself
                match = _LAMBDA_INVOCATION_URI.search(str(integration.get("uri", "")))
                if integration.get("type") != "aws_proxy" or match is None:
                    raise ProvisionError(
                        f"{logical_id}: {method} {path}: only Lambda proxy integrations are supported by the local cloud"
                    )
                self.model.rest_routes.append(
                    RestRoute(
                        function=self._function_by_arn(match.group("arn"), f"{logical_id}: {method} {path}"),
                        method=method,
                        path=path,
                        api_logical_id=logical_id,
                    )
                )
        return self._resource(logical_id, resource, api_id, RootResourceId=api_id[::-1])

    def _rest_stage(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        api = self._api_by_id(str(props.get("RestApiId")), "AWS::ApiGateway::RestApi", logical_id)
        stage = str(props.get("StageName", "Prod"))
        self._rest_stages[api.logical_id] = stage
        return self._resource(logical_id, resource, stage)

    def _finish_rest_routes(self) -> None:
        for route in self.model.rest_routes:
            route.stage = self._rest_stages.get(route.api_logical_id, route.stage)

    def _api_by_id(self, api_id: str, api_type: str, context: str) -> ProvisionedResource:
        for resource in self.model.resources.values():
            if resource.type == api_type and resource.physical_id == api_id:
                return resource
        raise ProvisionError(f"{context}: {api_id!r} is not an {api_type} of this template")

    # -- API Gateway WebSocket ------------------------------------------------------------------

    def _ws_api(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        if props.get("ProtocolType") != "WEBSOCKET":
            raise ProvisionError(
                f"{logical_id}: ProtocolType {props.get('ProtocolType')} is not supported by the local cloud "
                "(WEBSOCKET only; use a REST API for HTTP)"
            )
        for quick_create in ("Body", "BodyS3Location", "Target", "RouteKey"):
            if quick_create in props:
                raise ProvisionError(f"{logical_id}: {quick_create} on AWS::ApiGatewayV2::Api is not supported by the local cloud")
        api_id = self._api_id(logical_id)
        return self._resource(logical_id, resource, api_id, ApiId=api_id, ApiEndpoint=self.endpoints.websocket)

    def _ws_integration(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        self._api_by_id(str(props.get("ApiId")), "AWS::ApiGatewayV2::Api", logical_id)
        uri = str(props.get("IntegrationUri", ""))
        match = _LAMBDA_INVOCATION_URI.search(uri)
        if props.get("IntegrationType") != "AWS_PROXY" or not (match or ":function:" in uri):
            raise ProvisionError(f"{logical_id}: only AWS_PROXY integrations of a Lambda function are supported locally")
        integration_id = self._api_id(logical_id)[:7]
        self._ws_integrations[integration_id] = self._function_by_arn(match.group("arn") if match else uri, logical_id)
        return self._resource(logical_id, resource, integration_id, IntegrationId=integration_id)

    def _ws_route(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        api = self._api_by_id(str(props.get("ApiId")), "AWS::ApiGatewayV2::Api", logical_id)
        self._ws_routes.append((api.logical_id, {**props, "LogicalId": logical_id}))
        route_id = self._api_id(logical_id)[:7]
        return self._resource(logical_id, resource, route_id, RouteId=route_id)

    def _ws_authorizer(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        self._api_by_id(str(props.get("ApiId")), "AWS::ApiGatewayV2::Api", logical_id)
        if props.get("AuthorizerType") != "REQUEST":
            raise ProvisionError(f"{logical_id}: AuthorizerType {props.get('AuthorizerType')} is not supported locally (REQUEST only)")
        match = _LAMBDA_INVOCATION_URI.search(str(props.get("AuthorizerUri", "")))
        if match is None:
            raise ProvisionError(f"{logical_id}: AuthorizerUri must name a Lambda function")
        authorizer_id = self._api_id(logical_id)[:6]
        sources = props.get("IdentitySource", [])
        self._ws_authorizers[authorizer_id] = (
            self._function_by_arn(match.group("arn"), logical_id),
            [sources] if isinstance(sources, str) else list(sources),
        )
        return self._resource(logical_id, resource, authorizer_id, AuthorizerId=authorizer_id)

    def _ws_stage(self, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
        api = self._api_by_id(str(props.get("ApiId")), "AWS::ApiGatewayV2::Api", logical_id)
        stage = str(props.get("StageName", "$default"))
        self._ws_stages[api.logical_id] = stage
        return self._resource(logical_id, resource, stage)

    def _finish_ws_apis(self) -> None:
        templates = self.cfn.get("Resources") or {}
        for logical_id, resource in self.model.resources.items():
            if resource.type != "AWS::ApiGatewayV2::Api":
                continue
            props = self.resolver.resolve(templates[logical_id].get("Properties") or {}, logical_id)
            api = WsApi(
                logical_id=logical_id,
                api_id=resource.physical_id,
                name=str(props.get("Name", logical_id)),
                route_selection_expression=str(props.get("RouteSelectionExpression", "$request.body.action")),
                stage=self._ws_stages.get(logical_id, "$default"),
                routes={},
            )
            for api_logical_id, route in self._ws_routes:
                if api_logical_id != logical_id:
                    continue
                target = str(route.get("Target", ""))
                integration_id = target.removeprefix("integrations/")
                if integration_id not in self._ws_integrations:
                    raise ProvisionError(f"{route['LogicalId']}: Target {target!r} is not an integration of this template")
                api.routes[str(route["RouteKey"])] = self._ws_integrations[integration_id]
                authorizer_id = route.get("AuthorizerId")
                if authorizer_id:
                    if route["RouteKey"] != "$connect":
                        raise ProvisionError(f"{route['LogicalId']}: authorizers are only supported on $connect")
                    if authorizer_id not in self._ws_authorizers:
                        raise ProvisionError(f"{route['LogicalId']}: AuthorizerId {authorizer_id!r} is not an authorizer of this template")
                    api.connect_authorizer, api.authorizer_identity_sources = self._ws_authorizers[authorizer_id]
            self.model.ws_apis.append(api)

    # -- outputs --------------------------------------------------------------------------------

    def _resolve_outputs(self) -> None:
        for name, output in (self.cfn.get("Outputs") or {}).items():
            condition = output.get("Condition")
            if condition is not None and not self.resolver.condition(condition, f"output {name}"):
                continue
            value = self.resolver.resolve(output.get("Value"), f"output {name}")
            self.model.outputs[name] = value if isinstance(value, str) else _attribute_text(value)


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _attribute_text(value: Any) -> str:
    """A value as AWS attribute maps want it: booleans lower-case, documents as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _int_values(mapping: dict[str, Any]) -> dict[str, int]:
    return {key: int(value) for key, value in mapping.items()}


def _index(index: dict[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {key: index[key] for key in ("IndexName", "KeySchema", "Projection") if key in index}
    if "ProvisionedThroughput" in index:
        converted["ProvisionedThroughput"] = _int_values(index["ProvisionedThroughput"])
    return converted


def _cors_rule(rule: dict[str, Any]) -> dict[str, Any]:
    renamed = {"Id": "ID", "MaxAge": "MaxAgeSeconds", "ExposedHeaders": "ExposeHeaders"}
    return {renamed.get(key, key): (int(value) if key == "MaxAge" else value) for key, value in rule.items()}


def _parse_json(text: Any, context: str) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProvisionError(f"{context} is not valid JSON: {exc}") from exc
