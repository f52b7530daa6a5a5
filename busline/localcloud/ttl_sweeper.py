"""DynamoDB Time to Live for the local cloud.

moto records a table's TimeToLiveSpecification but never deletes an expired item, so locally finished
tasks (and anything else with a TTL) would live forever. The sweeper does what DynamoDB's background
process does: now and then it deletes the items whose TTL attribute, a Number of epoch seconds, lies in
the past. It deletes through the API, so the table's stream carries a REMOVE for each item as on AWS,
with one difference: AWS marks those records with a `userIdentity` of the DynamoDB service, which moto's
DeleteItem cannot add.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from botocore.exceptions import ClientError

from busline.localcloud.model import LocalCloudError
from busline.localcloud.runtime import console_line

DEFAULT_INTERVAL_S = 60.0
# `busline local up` reads it, as the CLI has no option for something only tests want shorter
INTERVAL_VARIABLE = "BUSLINE_TTL_SWEEP_SECONDS"
# DynamoDB leaves alone items whose TTL is more than five years in the past (a value in the wrong unit,
# milliseconds read as seconds, must not delete a table), so the sweeper does too.
OLDEST_EXPIRY_S = 5 * 365 * 24 * 3600
SCAN_PAGE_ITEMS = 1000
_STOP_WAIT_S = 5.0


def interval_from_environment(environ: Mapping[str, str]) -> float:
    """Seconds between sweeps: BUSLINE_TTL_SWEEP_SECONDS, else a minute; 0 or less turns TTL off."""
    raw = environ.get(INTERVAL_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_INTERVAL_S
    try:
        return float(raw)
    except ValueError:
        raise LocalCloudError(f"{INTERVAL_VARIABLE} must be a number of seconds, got {raw!r}") from None


class TtlSweeper:
    """Deletes expired items from every table with TTL enabled, every `interval_s` seconds."""

    name = "TTL sweeper"

    def __init__(self, dynamodb: Any, interval_s: float = DEFAULT_INTERVAL_S,
                 clock: Callable[[], float] = time.time) -> None:
        if interval_s <= 0:
            raise LocalCloudError(f"the TTL sweep interval must be positive, got {interval_s}")
        self.dynamodb = dynamodb
        self.interval_s = interval_s
        self.clock = clock
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ttl-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=_STOP_WAIT_S)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            try:
                self.sweep_once()
            except Exception as exc:  # moto going away at shutdown, or a transient error: next round
                if not self._stopping.is_set():
                    console_line(f"{self.name}: {type(exc).__name__}: {exc}")

    def sweep_once(self) -> dict[str, int]:
        """Delete what has expired by now; how many items went, by table (tables with none left out)."""
        now = self.clock()
        deleted: dict[str, int] = {}
        for table, attribute in self._tables_with_ttl():
            count = self._sweep_table(table, attribute, now)
            if count:
                deleted[table] = count
                console_line(f"{self.name}: deleted {count} expired item(s) from {table}")
        return deleted

    def _tables_with_ttl(self) -> Iterator[tuple[str, str]]:
        for table in self._table_names():
            try:
                ttl = self.dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                    continue  # deleted since it was listed
                raise
            if ttl.get("TimeToLiveStatus") == "ENABLED" and ttl.get("AttributeName"):
                yield table, ttl["AttributeName"]

    def _table_names(self) -> Iterator[str]:
        request: dict[str, Any] = {}
        while True:
            page = self.dynamodb.list_tables(**request)
            yield from page.get("TableNames", [])
            if not page.get("LastEvaluatedTableName"):
                return
            request["ExclusiveStartTableName"] = page["LastEvaluatedTableName"]

    def _sweep_table(self, table: str, attribute: str, now: float) -> int:
        keys = [key["AttributeName"] for key in self.dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]]
        names = {f"#a{index}": name for index, name in enumerate(dict.fromkeys([attribute, *keys]))}
        request: dict[str, Any] = {
            "TableName": table,
            "ProjectionExpression": ", ".join(names),
            "ExpressionAttributeNames": names,
            "Limit": SCAN_PAGE_ITEMS,
        }
        deleted = 0
        while not self._stopping.is_set():
            page = self.dynamodb.scan(**request)
            for item in page.get("Items", []):
                if self._expired(item.get(attribute), now) and self._delete(table, attribute, keys, item):
                    deleted += 1
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return deleted

    @staticmethod
    def _expired(value: Any, now: float) -> bool:
        # only a Number counts: DynamoDB ignores a TTL attribute of any other type
        if not isinstance(value, dict) or "N" not in value:
            return False
        try:
            expires = float(value["N"])
        except ValueError:
            return False
        return now - OLDEST_EXPIRY_S <= expires < now

    def _delete(self, table: str, attribute: str, keys: list[str], item: dict[str, Any]) -> bool:
        # Only as scanned: an item whose TTL was moved or removed since is not expired any more.
        try:
            self.dynamodb.delete_item(
                TableName=table,
                Key={key: item[key] for key in keys},
                ConditionExpression="#ttl = :seen",
                ExpressionAttributeNames={"#ttl": attribute},
                ExpressionAttributeValues={":seen": item[attribute]},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True
