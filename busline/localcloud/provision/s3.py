"""AWS::S3::Bucket, created in moto with versioning, CORS and tags; AWS::S3::BucketPolicy, checked and recorded."""

from __future__ import annotations

import json
from typing import Any

from busline.localcloud.model import ProvisionedResource, ProvisionError
from busline.localcloud.provision.context import ProvisionContext, provisioned


def bucket(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    if props.get("NotificationConfiguration"):
        raise ProvisionError(
            f"{logical_id}: NotificationConfiguration of AWS::S3::Bucket is not supported by the local cloud"
        )
    name = props.get("BucketName") or ctx.physical_name(logical_id, 63, lowercase=True)
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
    return provisioned(
        logical_id,
        resource,
        name,
        Arn=f"arn:aws:s3:::{name}",
        DomainName=f"{name}.s3.amazonaws.com",
        RegionalDomainName=f"{name}.s3.{ctx.region}.amazonaws.com",
        DualStackDomainName=f"{name}.s3.dualstack.{ctx.region}.amazonaws.com",
        WebsiteURL=f"http://{name}.s3-website-{ctx.region}.amazonaws.com",
    )


def _cors_rule(rule: dict[str, Any]) -> dict[str, Any]:
    renamed = {"Id": "ID", "MaxAge": "MaxAgeSeconds", "ExposedHeaders": "ExposeHeaders"}
    return {renamed.get(key, key): (int(value) if key == "MaxAge" else value) for key, value in rule.items()}


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
