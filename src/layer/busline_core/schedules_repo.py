"""The owners' schedules: a SchedulesTable item each (what GET /schedules reads, one Query per owner) and
an EventBridge Scheduler schedule each (what fires). The only module that calls either for schedules.

The Scheduler schedule is named `<owner key>.<schedule id>` in the stack's group; its target is the
scheduled-run function and its Input says who it runs as and what (contracts.ScheduledRun). The table
is the index because Scheduler's ListSchedules cannot be granted on a group, only on every schedule of
the account ("*"), and the API is not given that.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import boto3
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError
from pydantic import BaseModel

# 24 hex digits of SHA-256: no collision among any plausible number of owners, and the owner's id stays
# out of the schedule's name (names show up in the console, CloudTrail and metrics).
_OWNER_KEY_DIGITS = 24
# Scheduler retries a failed invocation; a run that could not start within the hour is no longer the
# run that was due (the next one will come).
_RETRY_POLICY = {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600}


class ScheduleRecord(BaseModel):
    owner: str
    schedule_id: str
    pipeline: str
    params: dict[str, Any]
    expression: str
    timezone: str
    description: str
    created_at: str  # ISO 8601 UTC
    notify_email: str | None = None
    retry_rejects: bool = False
    subscription_arn: str | None = None  # the address's SNS subscription, filtered to this schedule


def owner_key(owner: str) -> str:
    return hashlib.sha256(owner.encode("utf-8")).hexdigest()[:_OWNER_KEY_DIGITS]


def schedule_name(owner: str, schedule_id: str) -> str:
    return f"{owner_key(owner)}.{schedule_id}"


def _not_found(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ResourceNotFoundException"


def _record(item: dict[str, Any]) -> ScheduleRecord:
    return ScheduleRecord(
        owner=item["owner"],
        schedule_id=item["scheduleId"],
        pipeline=item["pipeline"],
        params=json.loads(item.get("params") or "{}"),
        expression=item["expression"],
        timezone=item["timezone"],
        description=item.get("description", ""),
        created_at=item["createdAt"],
        notify_email=item.get("notifyEmail"),
        retry_rejects=bool(item.get("retryRejects", False)),
        subscription_arn=item.get("subscriptionArn"),
    )


class SchedulesRepository:
    def __init__(
        self, table: Any, scheduler: Any, group: str, target_arn: str, role_arn: str,
        sns: Any = None, topic_arn: str = "",
    ) -> None:  # fmt: skip
        self._table = table
        self._scheduler = scheduler
        self._group = group
        self._target_arn = target_arn
        self._role_arn = role_arn
        self._sns = sns
        self._topic_arn = topic_arn

    @classmethod
    def connect(
        cls, table_name: str, group: str, target_arn: str, role_arn: str, topic_arn: str = ""
    ) -> SchedulesRepository:
        table = boto3.resource("dynamodb").Table(table_name)
        sns = boto3.client("sns") if topic_arn else None
        return cls(table, boto3.client("scheduler"), group, target_arn, role_arn, sns, topic_arn)

    def count(self, owner: str) -> int:
        response = self._table.query(KeyConditionExpression=Key("owner").eq(owner), Select="COUNT")
        return int(response.get("Count", 0))

    def create(self, record: ScheduleRecord, input_text: str) -> ScheduleRecord:
        """The item first, then the schedule (and its address's subscription): a schedule that fires always
        has its item to be listed by and deleted through; if the rest cannot be made, the item is taken back."""
        item: dict[str, Any] = {
            "owner": record.owner,
            "scheduleId": record.schedule_id,
            "pipeline": record.pipeline,
            "params": json.dumps(record.params),  # JSON text: DynamoDB takes no float
            "expression": record.expression,
            "timezone": record.timezone,
            "description": record.description,
            "createdAt": record.created_at,
        }
        if record.notify_email:
            item["notifyEmail"] = record.notify_email
        if record.retry_rejects:
            item["retryRejects"] = True
        self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(scheduleId)")
        try:
            self._scheduler.create_schedule(
                Name=schedule_name(record.owner, record.schedule_id),
                GroupName=self._group,
                ScheduleExpression=record.expression,
                ScheduleExpressionTimezone=record.timezone,
                Description=record.description,
                FlexibleTimeWindow={"Mode": "OFF"},
                State="ENABLED",
                Target={
                    "Arn": self._target_arn,
                    "RoleArn": self._role_arn,
                    "Input": input_text,
                    "RetryPolicy": _RETRY_POLICY,
                },
            )
        except Exception:
            self._table.delete_item(Key={"owner": record.owner, "scheduleId": record.schedule_id})
            raise
        if not record.notify_email:
            return record
        try:
            subscription_arn = self._subscribe(record.notify_email, record.schedule_id)
            self._table.update_item(
                Key={"owner": record.owner, "scheduleId": record.schedule_id},
                UpdateExpression="SET subscriptionArn = :arn",
                ExpressionAttributeValues={":arn": subscription_arn},
            )
        except Exception:
            self.delete(record.owner, record.schedule_id)
            raise
        return record.model_copy(update={"subscription_arn": subscription_arn})

    def _subscribe(self, address: str, schedule_id: str) -> str:
        """The address gets the notifications of this schedule's runs only (SNS mails it a confirmation first)."""
        if self._sns is None:
            raise ValueError("no notification topic to subscribe an address to (NOTIFICATION_TOPIC_ARN)")
        response = self._sns.subscribe(
            TopicArn=self._topic_arn,
            Protocol="email",
            Endpoint=address,
            Attributes={"FilterPolicy": json.dumps({"scheduleId": [schedule_id]})},
            ReturnSubscriptionArn=True,
        )
        return str(response["SubscriptionArn"])

    def get(self, owner: str, schedule_id: str) -> ScheduleRecord | None:
        item = self._table.get_item(Key={"owner": owner, "scheduleId": schedule_id}).get("Item")
        return None if item is None else _record(item)

    def list(self, owner: str) -> list[ScheduleRecord]:
        query: dict[str, Any] = {"KeyConditionExpression": Key("owner").eq(owner)}
        records: list[ScheduleRecord] = []
        while True:
            response = self._table.query(**query)
            records.extend(_record(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return records
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def delete(self, owner: str, schedule_id: str) -> bool:
        """The schedule first, then the item: nothing fires once this returns. False: there was none."""
        record = self.get(owner, schedule_id)
        if record is not None and record.subscription_arn and self._sns is not None:
            try:
                self._sns.unsubscribe(SubscriptionArn=record.subscription_arn)
            except ClientError as error:
                if not _not_found(error) and error.response.get("Error", {}).get("Code") != "NotFound":
                    raise
        try:
            self._scheduler.delete_schedule(Name=schedule_name(owner, schedule_id), GroupName=self._group)
        except ClientError as error:
            if not _not_found(error):
                raise
        removed = self._table.delete_item(Key={"owner": owner, "scheduleId": schedule_id}, ReturnValues="ALL_OLD")
        return "Attributes" in removed
