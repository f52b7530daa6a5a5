"""WebSocket connections (DynamoDB) and pushing messages to them (API Gateway @connections)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import boto3
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

# API Gateway closes a WebSocket after 2 hours at most; the TTL only sweeps rows whose
# $disconnect never arrived.
DEFAULT_TTL_SECONDS = 2 * 60 * 60


class Subscriber(NamedTuple):
    connection_id: str
    owner: str | None  # who signed in on $connect (None only for rows written before sign-in existed)


class ConnectionsRepository:
    def __init__(self, table: Any, clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._clock = clock

    @classmethod
    def from_table_name(cls, table_name: str) -> ConnectionsRepository:
        return cls(boto3.resource("dynamodb").Table(table_name))

    def _expires_at(self, ttl: int) -> int:
        return int(self._clock()) + ttl

    def add(self, connection_id: str, owner: str, task_id: str | None = None, ttl: int = DEFAULT_TTL_SECONDS) -> None:
        item: dict[str, Any] = {"connectionId": connection_id, "owner": owner, "expiresAt": self._expires_at(ttl)}
        if task_id:
            item["taskId"] = task_id  # absent, not empty: an empty string cannot be a GSI key
        self._table.put_item(Item=item)

    def subscribe(self, connection_id: str, task_id: str, ttl: int = DEFAULT_TTL_SECONDS) -> None:
        """One task per connection: a new subscription replaces the previous one."""
        self._table.update_item(
            Key={"connectionId": connection_id},
            UpdateExpression="SET taskId = :task, expiresAt = if_not_exists(expiresAt, :expires)",
            ExpressionAttributeValues={":task": task_id, ":expires": self._expires_at(ttl)},
        )

    def remove(self, connection_id: str) -> None:
        self._table.delete_item(Key={"connectionId": connection_id})

    def for_task(self, task_id: str) -> list[Subscriber]:
        query: dict[str, Any] = {"IndexName": "byTask", "KeyConditionExpression": Key("taskId").eq(task_id)}
        subscribers: list[Subscriber] = []
        while True:
            response = self._table.query(**query)
            subscribers.extend(
                Subscriber(str(item["connectionId"]), str(item["owner"]) if item.get("owner") else None)
                for item in response.get("Items", [])
            )
            if "LastEvaluatedKey" not in response:
                return subscribers
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]


class WebSocketPusher:
    """post_to_connection on the management endpoint (https://{api}.execute-api.{region}.amazonaws.com/{stage})."""

    def __init__(self, endpoint: str, client: Any | None = None) -> None:
        self.endpoint = endpoint
        self._client = client or boto3.client("apigatewaymanagementapi", endpoint_url=endpoint)

    def push(self, connection_id: str, payload: Mapping[str, Any] | str) -> bool:
        """True when delivered; False when the connection is gone (the caller removes it)."""
        data = (
            payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"), default=str)
        )
        try:
            self._client.post_to_connection(ConnectionId=connection_id, Data=data.encode())
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "GoneException" or status == 410:
                return False
            raise
        return True

