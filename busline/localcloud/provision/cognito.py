"""AWS::Cognito::* created in moto: user pools (moto signs their JWTs and serves their JWKS), app
clients, resource servers (the scopes machine clients ask for) and domains (where the OAuth2 token
endpoint lives; the local cloud serves that endpoint itself, see busline.localcloud.oauth2)."""

from __future__ import annotations

from typing import Any

from busline.localcloud.model import ProvisionedResource
from busline.localcloud.provision.context import ProvisionContext, provisioned, truthy

# CloudFormation property names that CreateUserPool takes under the same name.
_POOL_PROPERTIES = (
    "Policies", "LambdaConfig", "AutoVerifiedAttributes", "AliasAttributes", "UsernameAttributes",
    "SmsVerificationMessage", "EmailVerificationMessage", "EmailVerificationSubject", "MfaConfiguration",
    "DeviceConfiguration", "EmailConfiguration", "SmsConfiguration", "AdminCreateUserConfig", "Schema",
    "UsernameConfiguration", "AccountRecoverySetting", "UserAttributeUpdateSettings", "DeletionProtection",
    "UserPoolAddOns", "VerificationMessageTemplate",
)  # fmt: skip
_CLIENT_PROPERTIES = (
    "RefreshTokenValidity", "AccessTokenValidity", "IdTokenValidity", "TokenValidityUnits", "ReadAttributes",
    "WriteAttributes", "ExplicitAuthFlows", "SupportedIdentityProviders", "CallbackURLs", "LogoutURLs",
    "DefaultRedirectURI", "AllowedOAuthFlows", "AllowedOAuthScopes", "PreventUserExistenceErrors",
)  # fmt: skip
_CLIENT_FLAGS = ("GenerateSecret", "AllowedOAuthFlowsUserPoolClient", "EnableTokenRevocation")


def user_pool(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    request: dict[str, Any] = {"PoolName": props.get("UserPoolName") or ctx.physical_name(logical_id, 128)}
    request |= {name: props[name] for name in _POOL_PROPERTIES if name in props}
    if "UserPoolTags" in props:
        request["UserPoolTags"] = props["UserPoolTags"]
    pool = ctx.client("cognito-idp").create_user_pool(**request)["UserPool"]
    pool_id = str(pool["Id"])
    provider = f"cognito-idp.{ctx.region}.amazonaws.com/{pool_id}"
    return provisioned(
        logical_id, resource, pool_id,
        Arn=str(pool["Arn"]), ProviderName=provider, ProviderURL=f"https://{provider}", UserPoolId=pool_id,
    )  # fmt: skip


def user_pool_client(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    request: dict[str, Any] = {
        "UserPoolId": str(props["UserPoolId"]),
        "ClientName": props.get("ClientName") or ctx.physical_name(logical_id, 128),
    }
    request |= {name: props[name] for name in _CLIENT_PROPERTIES if name in props}
    request |= {name: truthy(props[name]) for name in _CLIENT_FLAGS if name in props}
    client = ctx.client("cognito-idp").create_user_pool_client(**request)["UserPoolClient"]
    attributes = {"Name": str(client["ClientName"]), "ClientId": str(client["ClientId"])}
    if client.get("ClientSecret"):
        attributes["ClientSecret"] = str(client["ClientSecret"])
    return provisioned(logical_id, resource, str(client["ClientId"]), **attributes)


def resource_server(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    request: dict[str, Any] = {
        "UserPoolId": str(props["UserPoolId"]),
        "Identifier": str(props["Identifier"]),
        "Name": str(props.get("Name") or props["Identifier"]),
    }
    if props.get("Scopes"):
        request["Scopes"] = props["Scopes"]
    ctx.client("cognito-idp").create_resource_server(**request)
    return provisioned(logical_id, resource, request["Identifier"])


def user_pool_domain(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    domain = str(props["Domain"])
    ctx.client("cognito-idp").create_user_pool_domain(Domain=domain, UserPoolId=str(props["UserPoolId"]))
    return provisioned(logical_id, resource, domain, CloudFrontDistribution=f"{domain}.cloudfront.net")
