"""Cognito (a user, USER_PASSWORD_AUTH, the tokens and the JWKS that verifies them), Secrets Manager, SSM
Parameter Store and EventBridge Scheduler at the API level: what sign-in, the settings and schedules rely on."""

from __future__ import annotations

import json
import string
import urllib.request
from typing import Any

import jwt
from botocore.exceptions import ClientError

from .model import Aws, Observation, Scenario, error_code, outcome, unique

COGNITO_VERIFY_DOC = (
    "https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-tokens-verifying-a-jwt.html"
)
SECRETS_DOC = "https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_PutSecretValue.html"
SSM_DOC = "https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html"
SCHEDULER_DOC = "https://docs.aws.amazon.com/scheduler/latest/APIReference/API_CreateSchedule.html"

PASSWORD = "Peer-check-Passw0rd!"  # a throwaway user of a throwaway emulator pool
ACCESS_SCOPE = "aws.cognito.signin.user.admin"


def cognito_sign_in(aws: Aws) -> Observation:
    cognito = aws.client("cognito-idp")
    pool_id = cognito.create_user_pool(PoolName=unique("pool"))["UserPool"]["Id"]
    client_id = cognito.create_user_pool_client(
        UserPoolId=pool_id, ClientName="peer", GenerateSecret=False,
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]  # fmt: skip
    user = cognito.admin_create_user(UserPoolId=pool_id, Username="alice", MessageAction="SUPPRESS")["User"]
    sub = next(attribute["Value"] for attribute in user["Attributes"] if attribute["Name"] == "sub")
    cognito.admin_set_user_password(UserPoolId=pool_id, Username="alice", Password=PASSWORD, Permanent=True)
    result = cognito.initiate_auth(ClientId=client_id, AuthFlow="USER_PASSWORD_AUTH",
                                   AuthParameters={"USERNAME": "alice", "PASSWORD": PASSWORD})["AuthenticationResult"]
    wrong = outcome(lambda: cognito.initiate_auth(ClientId=client_id, AuthFlow="USER_PASSWORD_AUTH",
                                                  AuthParameters={"USERNAME": "alice", "PASSWORD": "wrong-Passw0rd!"}))
    issuer = f"https://cognito-idp.{aws.region}.amazonaws.com/{pool_id}"
    jwks_url = f"{aws.endpoint.rstrip('/')}/{pool_id}/.well-known/jwks.json"
    access = verified(result["AccessToken"], jwks_url)
    identity = verified(result["IdToken"], jwks_url, audience=client_id)
    return {
        "tokens": sorted(key for key in ("AccessToken", "IdToken", "RefreshToken") if result.get(key)),
        "tokenType": result.get("TokenType"),
        "expiresIn": result.get("ExpiresIn"),
        "wrongPassword": wrong,
        "access": {
            "verifiedWithJwks": access.get("verified"), "token_use": access.get("token_use"),
            "issuerIsPool": access.get("iss") == issuer, "client_id": access.get("client_id") == client_id,
            "sub": access.get("sub") == sub, "username": access.get("username"), "scope": access.get("scope"),
        },
        "id": {
            "verifiedWithJwks": identity.get("verified"), "token_use": identity.get("token_use"),
            "issuerIsPool": identity.get("iss") == issuer, "aud": identity.get("aud") == client_id,
            "sub": identity.get("sub") == sub, "cognito:username": identity.get("cognito:username"),
        },
    }


def verified(token: str, jwks_url: str, audience: str | None = None) -> dict[str, Any]:
    """The token's claims with `verified`: whether the JWKS at the pool's well-known URL verifies it."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    try:
        with urllib.request.urlopen(jwks_url, timeout=10) as answer:
            keys = json.loads(answer.read())["keys"]
        kid = jwt.get_unverified_header(token).get("kid")
        key = next(jwt.PyJWK(key).key for key in keys if key.get("kid") == kid)
        jwt.decode(token, key, algorithms=["RS256"], audience=audience,
                   options={"verify_aud": audience is not None, "verify_exp": True})
        claims["verified"] = True
    except (OSError, ValueError, StopIteration, KeyError, jwt.PyJWTError) as error:
        claims["verified"] = f"no: {type(error).__name__}"
    return claims


def secrets_versions(aws: Aws) -> Observation:
    secrets = aws.client("secretsmanager")
    name = unique("secret")
    secrets.create_secret(Name=name, SecretString="v1")
    first = secrets.get_secret_value(SecretId=name)
    secrets.put_secret_value(SecretId=name, SecretString="v2")
    current = secrets.get_secret_value(SecretId=name)
    previous = secrets.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")
    password = secrets.get_random_password(PasswordLength=24, ExcludePunctuation=True)["RandomPassword"]
    return {
        "first": [first["SecretString"], first["VersionStages"]],
        "current": [current["SecretString"], current["VersionStages"]],
        "previous": [previous["SecretString"], previous["VersionStages"]],
        "createAgain": outcome(lambda: secrets.create_secret(Name=name, SecretString="again")),
        "missing": outcome(lambda: secrets.get_secret_value(SecretId=unique("missing"))),
        "randomPassword": [len(password), any(char in string.punctuation for char in password)],
    }


def ssm_parameters(aws: Aws) -> Observation:
    ssm = aws.client("ssm")
    name = f"/{unique('params')}/switch"
    first = ssm.put_parameter(Name=name, Value="off", Type="String")["Version"]
    again = outcome(lambda: ssm.put_parameter(Name=name, Value="on", Type="String"))
    second = ssm.put_parameter(Name=name, Value="on", Type="String", Overwrite=True)["Version"]
    value = ssm.get_parameter(Name=name)["Parameter"]
    secret_name = name.replace("switch", "secret")
    ssm.put_parameter(Name=secret_name, Value="s3cr3t", Type="SecureString")
    plain = ssm.get_parameter(Name=secret_name, WithDecryption=True)["Parameter"]["Value"]
    sealed = ssm.get_parameter(Name=secret_name, WithDecryption=False)["Parameter"]["Value"]
    by_path = ssm.get_parameters_by_path(Path=name.rsplit("/", 1)[0])["Parameters"]
    return {
        "versions": [first, second],
        "putExistingWithoutOverwrite": again,
        "value": [value["Value"], value["Version"], value["Type"]],
        "secureString": [plain, sealed != "s3cr3t"],
        "byPath": sorted(parameter["Name"].rsplit("/", 1)[-1] for parameter in by_path),
        "missing": outcome(lambda: ssm.get_parameter(Name=f"/{unique('missing')}")),
    }


def scheduler_crud(aws: Aws) -> Observation:
    scheduler = aws.client("scheduler")
    group = unique("group")
    scheduler.create_schedule_group(Name=group)
    target = {
        "Arn": f"arn:aws:lambda:{aws.region}:000000000000:function:peer-scheduled",
        "RoleArn": "arn:aws:iam::000000000000:role/peer-scheduler",
        "Input": json.dumps({"schedule": "nightly"}),
    }

    def create(name: str, expression: str) -> Any:
        return scheduler.create_schedule(
            Name=name, GroupName=group, ScheduleExpression=expression, ScheduleExpressionTimezone="Europe/Paris",
            FlexibleTimeWindow={"Mode": "OFF"}, Target=target,
        )  # fmt: skip

    created = create("nightly", "cron(0 3 * * ? *)")
    got = scheduler.get_schedule(Name="nightly", GroupName=group)
    listed = scheduler.list_schedules(GroupName=group)["Schedules"]
    duplicate = outcome(lambda: create("nightly", "cron(0 3 * * ? *)"))
    invalid = outcome(lambda: create("broken", "every night"))
    scheduler.delete_schedule(Name="nightly", GroupName=group)
    try:
        scheduler.get_schedule(Name="nightly", GroupName=group)
        after_delete = "ok"
    except ClientError as error:
        after_delete = error_code(error)
    return {
        "arnNamesGroup": created["ScheduleArn"].endswith(f":schedule/{group}/nightly"),
        "got": {key: got.get(key) for key in ("Name", "ScheduleExpression", "ScheduleExpressionTimezone", "State",
                                               "FlexibleTimeWindow")},
        "gotGroup": got.get("GroupName") == group,
        "target": {key: got.get("Target", {}).get(key) for key in ("Arn", "Input")},
        "listed": [[summary["Name"], summary.get("GroupName") == group, summary.get("State")] for summary in listed],
        "duplicate": duplicate,
        "invalidExpression": invalid,
        "afterDelete": after_delete,
    }


SCENARIOS = [
    Scenario("cognito.sign-in", "USER_PASSWORD_AUTH tokens, their claims, verified with the pool's JWKS",
             COGNITO_VERIFY_DOC,
             {"tokens": ["AccessToken", "IdToken", "RefreshToken"], "tokenType": "Bearer", "expiresIn": 3600,
              "wrongPassword": "NotAuthorizedException",
              "access": {"verifiedWithJwks": True, "token_use": "access", "issuerIsPool": True, "client_id": True,
                         "sub": True, "username": "alice", "scope": ACCESS_SCOPE},
              "id": {"verifiedWithJwks": True, "token_use": "id", "issuerIsPool": True, "aud": True, "sub": True,
                     "cognito:username": "alice"}}, cognito_sign_in),
    Scenario("secretsmanager.versions", "AWSCURRENT / AWSPREVIOUS, duplicates, missing, random passwords",
             SECRETS_DOC,
             {"first": ["v1", ["AWSCURRENT"]], "current": ["v2", ["AWSCURRENT"]], "previous": ["v1", ["AWSPREVIOUS"]],
              "createAgain": "ResourceExistsException", "missing": "ResourceNotFoundException",
              "randomPassword": [24, False]}, secrets_versions),
    Scenario("ssm.parameters", "versions, Overwrite, SecureString, by path, missing", SSM_DOC,
             {"versions": [1, 2], "putExistingWithoutOverwrite": "ParameterAlreadyExists", "value": ["on", 2, "String"],
              "secureString": ["s3cr3t", True], "byPath": ["secret", "switch"], "missing": "ParameterNotFound"},
             ssm_parameters),
    Scenario("scheduler.crud", "create / get / list / duplicate / invalid / delete a schedule in a group",
             SCHEDULER_DOC,
             {"arnNamesGroup": True,
              "got": {"Name": "nightly", "ScheduleExpression": "cron(0 3 * * ? *)",
                      "ScheduleExpressionTimezone": "Europe/Paris", "State": "ENABLED",
                      "FlexibleTimeWindow": {"Mode": "OFF"}},
              "gotGroup": True,
              "target": {"Arn": "arn:aws:lambda:us-east-1:000000000000:function:peer-scheduled",
                         "Input": json.dumps({"schedule": "nightly"})},
              "listed": [["nightly", True, "ENABLED"]], "duplicate": "ConflictException",
              "invalidExpression": "ValidationException", "afterDelete": "ResourceNotFoundException"},
             scheduler_crud),
]
