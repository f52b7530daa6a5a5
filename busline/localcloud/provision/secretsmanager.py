"""AWS::SecretsManager::Secret, created in moto: a given SecretString, or one generated the way
GenerateSecretString describes (length, excluded characters, optionally inside a JSON template)."""

from __future__ import annotations

import json
from typing import Any

from busline.localcloud.model import ProvisionedResource, ProvisionError
from busline.localcloud.provision.context import ProvisionContext, parse_json, provisioned, truthy


def secret(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    name = props.get("Name") or ctx.physical_name(logical_id, 512)
    secrets = ctx.client("secretsmanager")
    if "SecretString" in props:
        value = str(props["SecretString"])
    elif "GenerateSecretString" in props:
        value = _generated_secret(ctx, logical_id, props["GenerateSecretString"])
    else:
        value = secrets.get_random_password()["RandomPassword"]
    request: dict[str, Any] = {"Name": name, "SecretString": value}
    if props.get("Description"):
        request["Description"] = props["Description"]
    if props.get("Tags"):
        request["Tags"] = props["Tags"]
    arn = secrets.create_secret(**request)["ARN"]
    return provisioned(logical_id, resource, arn, Id=arn)


def _generated_secret(ctx: ProvisionContext, logical_id: str, spec: dict[str, Any]) -> str:
    options = {
        key: (int(spec[key]) if key == "PasswordLength" else spec[key] if key == "ExcludeCharacters" else truthy(spec[key]))
        for key in (
            "PasswordLength", "ExcludeCharacters", "ExcludeNumbers", "ExcludePunctuation",
            "ExcludeUppercase", "ExcludeLowercase", "IncludeSpace", "RequireEachIncludedType",
        )
        if key in spec
    }
    password = ctx.client("secretsmanager").get_random_password(**options)["RandomPassword"]
    template_text = spec.get("SecretStringTemplate")
    key = spec.get("GenerateStringKey")
    if template_text is None and key is None:
        return str(password)
    if template_text is None or key is None:
        raise ProvisionError(
            f"{logical_id}: GenerateSecretString needs both SecretStringTemplate and GenerateStringKey, or neither"
        )
    document = parse_json(template_text, f"{logical_id}: SecretStringTemplate")
    document[key] = password
    return json.dumps(document)
