"""AWS::S3::Bucket, created in moto with versioning, CORS and tags."""

from __future__ import annotations

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
