"""A template's AWS resources provisioned in this process, into whatever boto3 reaches — for tests,
inside `moto.mock_aws()`, with no moto server, no gateways and no functions running.

Unit tests use it so their tables, buckets, buses and topics are the template's own, created by the
same provisioner as `busline local up`: a schema changed in template.yaml is the schema they test.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from busline.localcloud.intrinsics import DEFAULT_ACCOUNT_ID
from busline.localcloud.model import CloudModel
from busline.localcloud.provision import DEFAULT_STACK_NAME, provision
from busline.localcloud.template import load_and_translate

DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class ProvisionedStack:
    """The physical names and ARNs by logical id, and the stack outputs, of one provisioned template."""

    model: CloudModel

    @property
    def outputs(self) -> dict[str, str]:
        return self.model.outputs

    def name(self, logical_id: str) -> str:
        """What `Ref` returns: a table or bus name, a queue URL, a topic or secret ARN…"""
        return self.model.resources[logical_id].physical_id

    def attribute(self, logical_id: str, attribute: str) -> str:
        """What `Fn::GetAtt` returns, e.g. ("TasksTable", "StreamArn")."""
        return self.model.resources[logical_id].attributes[attribute]

    def environment(self, function_logical_id: str) -> dict[str, str]:
        """The environment the template gives a function, resolved to this stack's names."""
        return dict(self.model.functions[function_logical_id].environment)


def provision_in_process(
    template: Path,
    parameters: Mapping[str, str] | None = None,
    *,
    region: str = DEFAULT_REGION,
    stack_name: str = DEFAULT_STACK_NAME,
) -> ProvisionedStack:
    """Create `template`'s resources where boto3's default endpoints lead (call it inside mock_aws()).

    The SAM translation is cached per file version, and the boto3 clients per process: both cost more
    than creating the resources, and neither depends on what a test does to them.
    """
    template = template.resolve()
    cfn = copy.deepcopy(_translated(template, template.stat().st_mtime_ns, region))
    model = provision(
        cfn, None, dict(parameters or {}), region, DEFAULT_ACCOUNT_ID,
        stack_name=stack_name, clients=functools.partial(_client, region),
    )
    return ProvisionedStack(model)


@functools.lru_cache(maxsize=8)
def _translated(template: Path, mtime_ns: int, region: str) -> dict[str, Any]:
    return load_and_translate(template, region)


@functools.lru_cache(maxsize=64)
def _client(region: str, service: str) -> Any:
    # A client made under one mock_aws() works under the next: moto intercepts every client's requests.
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region)
    return session.client(service)  # type: ignore[call-overload]
