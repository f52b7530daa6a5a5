"""WebSocketAuthorizerFunction: the $connect REQUEST authorizer (Cognito access token in `?token=`)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from busline_core.identity import AccessTokens, InvalidToken, allow_policy
from busline_core.settings import AuthorizerSettings

logger = Logger()
tracer = Tracer()
settings = AuthorizerSettings()
tokens = AccessTokens.for_pool(settings.user_pool_id, settings.client_ids)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    token = (event.get("queryStringParameters") or {}).get("token") or ""
    try:
        verified = tokens.verify(token)
    except InvalidToken as refusal:
        logger.info("connection refused", extra={"reason": str(refusal)})
        # API Gateway's contract: this exact message makes it answer 401 instead of 500.
        raise Exception("Unauthorized") from None  # noqa: TRY002
    logger.info("connection allowed", extra={"owner": verified.owner, "client_id": verified.client_id})
    return allow_policy(verified, event["methodArn"])
