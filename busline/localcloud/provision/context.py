"""What every resource handler shares while one template is provisioned: the boto3 clients, the
resolver, the CloudModel being built, stable physical names, and the lookups between resources.

Handlers of one service keep their cross-resource state here (a layer's folder, an API's stage),
because the resource that needs it (a function, a route) is handled later, in another call.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from busline.localcloud.intrinsics import Resolver, resolve_parameters
from busline.localcloud.model import NO_ENDPOINTS, CloudModel, Endpoints, ProvisionedResource, ProvisionError


class ProvisionContext:
    def __init__(
        self,
        cfn: dict[str, Any],
        endpoints: Endpoints | None,
        overrides: dict[str, str],
        region: str,
        account_id: str,
        stack_name: str,
        clients: Callable[[str], Any] | None = None,
    ) -> None:
        self.cfn = cfn
        self.region = region
        self.account_id = account_id
        self.stack_name = stack_name
        # None: provisioned in-process (moto.mock_aws) with no local gateways, so URLs stay AWS's.
        self.endpoints = endpoints
        self.model = CloudModel(region=region, account_id=account_id, endpoints=endpoints or NO_ENDPOINTS)
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
        self._client_factory = clients
        self.layer_dirs: dict[str, Path] = {}  # layer version ARN -> folder for sys.path
        self.rest_stages: dict[str, str] = {}  # RestApi logical id -> stage name
        self.ws_integrations: dict[str, str] = {}  # integration id -> function logical id
        self.ws_routes: list[tuple[str, dict[str, Any]]] = []  # (api logical id, resolved properties)
        self.ws_authorizers: dict[str, tuple[str, list[str]]] = {}  # authorizer id -> (function, sources)
        self.ws_stages: dict[str, str] = {}  # api logical id -> stage name

    def client(self, service: Any) -> Any:  # Any: boto3-stubs only type literal service names
        if service not in self._clients:
            if self._client_factory is not None:
                self._clients[service] = self._client_factory(service)
            else:
                # Without endpoints boto3 uses AWS's, which an in-process mock_aws() intercepts.
                endpoint_url = self.endpoints.aws if self.endpoints is not None else None
                self._clients[service] = self.session.client(service, endpoint_url=endpoint_url)
        return self._clients[service]

    def physical_name(self, logical_id: str, max_length: int, *, lowercase: bool = False, suffix: str = "") -> str:
        # CloudFormation adds a random suffix; a stable name keeps local runs reproducible.
        name = f"{self.stack_name}-{logical_id}"
        if lowercase:
            name = re.sub(r"[^a-z0-9.-]", "-", name.lower())
        return name[: max_length - len(suffix)] + suffix

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account_id}:{resource}"

    def api_id(self, logical_id: str) -> str:
        return hashlib.sha1(f"{self.stack_name}/{logical_id}".encode()).hexdigest()[:10]

    def function_by_arn(self, reference: str, context: str) -> str:
        """The logical id of the function a name, ARN or qualified ARN refers to."""
        name = reference.split(":function:", 1)[1].split(":", 1)[0] if ":function:" in reference else reference
        for spec in self.model.functions.values():
            if spec.name == name:
                return spec.logical_id
        raise ProvisionError(f"{context}: {reference!r} is not a function of this template")

    def queue_by_arn(self, arn: str, context: str) -> ProvisionedResource:
        for resource in self.model.resources.values():
            if resource.type == "AWS::SQS::Queue" and resource.attributes.get("Arn") == arn:
                return resource
        raise ProvisionError(f"{context}: queue {arn} is not a queue of this template")

    def api_by_id(self, api_id: str, api_type: str, context: str) -> ProvisionedResource:
        for resource in self.model.resources.values():
            if resource.type == api_type and resource.physical_id == api_id:
                return resource
        raise ProvisionError(f"{context}: {api_id!r} is not an {api_type} of this template")


Handler = Callable[[ProvisionContext, str, dict[str, Any], dict[str, Any]], ProvisionedResource]
"""(context, logical id, template resource, resolved Properties) -> what Ref and GetAtt return."""


def provisioned(logical_id: str, resource: dict[str, Any], physical_id: str, **attributes: str) -> ProvisionedResource:
    return ProvisionedResource(logical_id, resource["Type"], physical_id, dict(attributes))


def recorded(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    """A resource with nothing to create locally; it only needs a name for Ref."""
    return provisioned(logical_id, resource, ctx.physical_name(logical_id, 256))


def truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def attribute_text(value: Any) -> str:
    """A value as AWS attribute maps want it: booleans lower-case, documents as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def int_values(mapping: dict[str, Any]) -> dict[str, int]:
    return {key: int(value) for key, value in mapping.items()}


def parse_json(text: Any, context: str) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProvisionError(f"{context} is not valid JSON: {exc}") from exc
