"""DynamoDB (conditional writes, atomic counters, streams, TTL) and S3 (ranges, conditions, multipart, a
presigned PUT) at the API level: what Busline's task state and chunks rely on."""

from __future__ import annotations

import hashlib
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from .model import Aws, Observation, Scenario, error_code, http_status, outcome, poll, unique

DDB_CONDITION_DOC = "https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_PutItem.html"
DDB_COUNTER_DOC = (
    "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/WorkingWithItems.html"
    "#WorkingWithItems.AtomicCounters"
)
DDB_STREAMS_DOC = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Streams.html"
DDB_RECORD_DOC = "https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_streams_StreamRecord.html"
# deletion ("typically within two days"), expired items still read; the REMOVE's userIdentity is on API_streams_Record
DDB_TTL_DOC = "https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateTimeToLive.html"
S3_GET_DOC = "https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html"
S3_CONDITIONAL_WRITE_DOC = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html"
S3_MULTIPART_DOC = "https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html"
S3_PRESIGNED_DOC = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/PresignedUrlUploadObject.html"

COUNTER_THREADS = 8
COUNTER_ADDS_PER_THREAD = 25
PART_BYTES = 5 * 1024 * 1024  # S3's smallest part but the last
# AWS deletes "typically within two days"; the wait covers a sweep a minute (MiniStack's, fixed) and the local cloud's
# (the runner starts it with a short BUSLINE_TTL_SWEEP_SECONDS); it ends as soon as the item is gone.
TTL_WAIT_S = 65.0
TTL_SERVICE_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}


# -- DynamoDB ----------------------------------------------------------------------------------------


def table(aws: Aws, name: str, stream: str | None = None) -> str:
    dynamodb = aws.client("dynamodb")
    request: dict[str, Any] = {
        "TableName": name, "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    }  # fmt: skip
    if stream:
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream}
    description = dynamodb.create_table(**request)["TableDescription"]
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    return str(description.get("LatestStreamArn", ""))


def ddb_conditional_writes(aws: Aws) -> Observation:
    dynamodb = aws.client("dynamodb")
    name = unique("conditional")
    table(aws, name)
    item = {"pk": {"S": "a"}, "v": {"N": "1"}}

    def put_new() -> Any:
        return dynamodb.put_item(TableName=name, Item=item, ConditionExpression="attribute_not_exists(pk)")

    first, second = outcome(put_new), outcome(put_new)
    try:
        dynamodb.update_item(
            TableName=name, Key={"pk": {"S": "a"}}, UpdateExpression="SET v = :two",
            ConditionExpression="v = :zero", ExpressionAttributeValues={":two": {"N": "2"}, ":zero": {"N": "0"}},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )  # fmt: skip
        refused_update, item_on_failure = "ok", None
    except ClientError as error:
        refused_update, item_on_failure = error_code(error), error.response.get("Item")
    return {"firstPut": first, "secondPut": second, "refusedUpdate": refused_update, "itemOnFailure": item_on_failure}


def ddb_atomic_counter(aws: Aws) -> Observation:
    dynamodb = aws.client("dynamodb")
    name = unique("counter")
    table(aws, name)

    def add_many(_: int) -> None:
        for _ in range(COUNTER_ADDS_PER_THREAD):
            dynamodb.update_item(TableName=name, Key={"pk": {"S": "c"}}, UpdateExpression="ADD n :one",
                                 ExpressionAttributeValues={":one": {"N": "1"}})

    with ThreadPoolExecutor(COUNTER_THREADS) as pool:
        list(pool.map(add_many, range(COUNTER_THREADS)))
    final = dynamodb.get_item(TableName=name, Key={"pk": {"S": "c"}}, ConsistentRead=True)["Item"]["n"]["N"]
    return {"counter": int(final)}


def stream_records(aws: Aws, stream_arn: str, expected: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Every record of every shard from TRIM_HORIZON, read until `expected` are there or the time is up."""
    streams = aws.client("dynamodbstreams")

    def read_all() -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        shards = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
        for shard in shards:
            iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard["ShardId"],
                                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            while iterator:
                page = streams.get_records(ShardIterator=iterator, Limit=1000)
                records.extend(page.get("Records", []))
                if not page.get("Records"):
                    break
                iterator = page.get("NextShardIterator")
        return records

    deadline = time.monotonic() + timeout_s
    records = read_all()
    while len(records) < expected and time.monotonic() < deadline:
        time.sleep(0.25)
        records = read_all()
    return records


def ddb_stream_shape(aws: Aws) -> Observation:
    dynamodb = aws.client("dynamodb")
    name = unique("stream")
    stream_arn = table(aws, name, stream="NEW_AND_OLD_IMAGES")
    key = {"pk": {"S": "a"}}
    dynamodb.put_item(TableName=name, Item={**key, "status": {"S": "new"}})
    dynamodb.update_item(TableName=name, Key=key, UpdateExpression="SET #s = :done",
                         ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":done": {"S": "done"}})
    dynamodb.delete_item(TableName=name, Key=key)
    records = stream_records(aws, stream_arn, expected=3)
    changes = [record["dynamodb"] for record in records]
    sequence = [int(change["SequenceNumber"]) for change in changes]
    return {
        "eventNames": [record["eventName"] for record in records],
        "eventSource": sorted({record.get("eventSource") for record in records}),
        "keys": [change.get("Keys") for change in changes],
        "images": [[("OldImage" in change), ("NewImage" in change)] for change in changes],
        "statuses": [[change.get("OldImage", {}).get("status", {}).get("S"),
                      change.get("NewImage", {}).get("status", {}).get("S")] for change in changes],
        "viewType": sorted({change.get("StreamViewType") for change in changes}),
        "withCreationTimeAndSize": all("ApproximateCreationDateTime" in change and "SizeBytes" in change
                                       for change in changes),
        "sequenceNumbersIncrease": sequence == sorted(sequence) and len(set(sequence)) == len(sequence),
    }


def ddb_stream_unchanged_writes(aws: Aws) -> Observation:
    dynamodb = aws.client("dynamodb")
    name = unique("nochange")
    stream_arn = table(aws, name, stream="NEW_AND_OLD_IMAGES")
    item = {"pk": {"S": "a"}, "v": {"N": "1"}}
    dynamodb.put_item(TableName=name, Item=item)
    dynamodb.put_item(TableName=name, Item=item)  # the very same item again
    dynamodb.update_item(TableName=name, Key={"pk": {"S": "a"}}, UpdateExpression="SET v = :one",
                         ExpressionAttributeValues={":one": {"N": "1"}})
    dynamodb.put_item(TableName=name, Item={"pk": {"S": "sentinel"}})
    records = stream_records(aws, stream_arn, expected=2)
    return {"records": [[record["eventName"], record["dynamodb"]["Keys"]["pk"]["S"]] for record in records]}


def ddb_ttl(aws: Aws) -> Observation:
    dynamodb = aws.client("dynamodb")
    name = unique("ttl")
    stream_arn = table(aws, name, stream="NEW_AND_OLD_IMAGES")
    dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"})

    def enabled() -> dict[str, Any] | None:
        ttl: dict[str, Any] = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        return ttl if ttl.get("TimeToLiveStatus") == "ENABLED" else None

    # AWS says ENABLING for up to an hour before ENABLED; emulators are at ENABLED at once
    description = poll(enabled, 10) or dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    now = int(time.time())
    dynamodb.put_item(TableName=name, Item={"pk": {"S": "expired"}, "expiresAt": {"N": str(now - 3600)}})
    dynamodb.put_item(TableName=name, Item={"pk": {"S": "live"}, "expiresAt": {"N": str(now + 3600)}})
    dynamodb.put_item(TableName=name, Item={"pk": {"S": "text"}, "expiresAt": {"S": str(now - 3600)}})

    def exists(key: str) -> bool:
        return "Item" in dynamodb.get_item(TableName=name, Key={"pk": {"S": key}}, ConsistentRead=True)

    readable_at_once = exists("expired")
    deleted = bool(poll(lambda: not exists("expired"), TTL_WAIT_S, interval_s=1.0))
    removes = [record for record in stream_records(aws, stream_arn, expected=4, timeout_s=5 if deleted else 0)
               if record["eventName"] == "REMOVE"]
    return {
        "status": [description.get("TimeToLiveStatus"), description.get("AttributeName")],
        "expiredReadableBeforeDeletion": readable_at_once,
        "expiredDeleted": deleted,
        "keptLiveAndNonNumber": [exists("live"), exists("text")],
        "removeUserIdentity": [record.get("userIdentity") for record in removes],
    }


# -- S3 ----------------------------------------------------------------------------------------------


def bucket(aws: Aws) -> str:
    name = unique("bucket")
    aws.client("s3").create_bucket(Bucket=name)
    return name


def ranged_get(aws: Aws, name: str, key: str, byte_range: str) -> list[Any]:
    try:
        answer = aws.client("s3").get_object(Bucket=name, Key=key, Range=byte_range)
    except ClientError as error:
        return [http_status(error), error_code(error)]
    body = answer["Body"].read()
    return [answer["ResponseMetadata"]["HTTPStatusCode"], answer.get("ContentRange"), body.decode()]


def s3_ranges(aws: Aws) -> Observation:
    name = bucket(aws)
    aws.client("s3").put_object(Bucket=name, Key="digits", Body=b"0123456789" * 10)
    return {byte_range: ranged_get(aws, name, "digits", byte_range)
            for byte_range in ("bytes=10-14", "bytes=95-", "bytes=-3", "bytes=98-200", "bytes=100-110")}


def s3_conditions(aws: Aws) -> Observation:
    s3 = aws.client("s3")
    name = bucket(aws)
    etag = s3.put_object(Bucket=name, Key="k", Body=b"v1")["ETag"]

    def get_status(**condition: str) -> int:
        try:
            return int(s3.get_object(Bucket=name, Key="k", **condition)["ResponseMetadata"]["HTTPStatusCode"])
        except ClientError as error:
            return http_status(error)

    def put_status(key: str, **condition: str) -> list[Any]:
        try:
            s3.put_object(Bucket=name, Key=key, Body=b"v2", **condition)
            return [200, "ok"]
        except ClientError as error:
            return [http_status(error), error_code(error)]

    return {
        "getIfMatchSame": get_status(IfMatch=etag),
        "getIfMatchOther": get_status(IfMatch='"0000"'),
        "getIfNoneMatchSame": get_status(IfNoneMatch=etag),
        "putIfNoneMatchStarExisting": put_status("k", IfNoneMatch="*"),
        "putIfNoneMatchStarNew": put_status("new", IfNoneMatch="*"),
        "bodyAfter": s3.get_object(Bucket=name, Key="k")["Body"].read().decode(),
    }


def s3_multipart(aws: Aws) -> Observation:
    s3 = aws.client("s3")
    name = bucket(aws)
    parts_data = [b"a" * PART_BYTES, b"b"]

    def upload(key: str, chunks: list[bytes]) -> Any:
        upload_id = s3.create_multipart_upload(Bucket=name, Key=key)["UploadId"]
        parts = [{"PartNumber": number, "ETag": s3.upload_part(Bucket=name, Key=key, UploadId=upload_id,
                                                                PartNumber=number, Body=chunk)["ETag"]}
                 for number, chunk in enumerate(chunks, start=1)]
        listed = [part["PartNumber"] for part in s3.list_parts(Bucket=name, Key=key, UploadId=upload_id)["Parts"]]
        try:
            done = s3.complete_multipart_upload(Bucket=name, Key=key, UploadId=upload_id,
                                                MultipartUpload={"Parts": parts})
        except ClientError as error:
            return listed, error_code(error)
        return listed, done["ETag"]

    listed, etag = upload("big", parts_data)
    expected_etag = '"' + hashlib.md5(b"".join(hashlib.md5(chunk).digest() for chunk in parts_data)).hexdigest() + '-2"'
    head = s3.head_object(Bucket=name, Key="big")
    first_part = s3.head_object(Bucket=name, Key="big", PartNumber=1)
    _, too_small = upload("small", [b"a", b"b"])
    return {
        "listedParts": listed,
        "etagIsMd5OfPartMd5sDash2": etag == expected_etag,
        "size": head["ContentLength"],
        "part1": [first_part["ContentLength"], first_part.get("PartsCount")],
        "smallFirstPart": too_small,
    }


def s3_presigned_form_put(aws: Aws) -> Observation:
    s3 = aws.client("s3")
    name = bucket(aws)
    url = s3.generate_presigned_url("put_object", Params={"Bucket": name, "Key": "upload.csv"}, ExpiresIn=300)
    body = b"id,note\n1,a=b&c\n"
    # what urllib sends with a PUT that names no Content-Type
    request = urllib.request.Request(url, data=body, method="PUT",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            status = answer.status
    except urllib.error.HTTPError as error:
        status = error.code
    stored = s3.get_object(Bucket=name, Key="upload.csv")["Body"].read()
    return {"status": status, "storedBody": stored.decode()}


SCENARIOS = [
    Scenario("dynamodb.conditional", "attribute_not_exists put twice; a refused update returns the old item",
             DDB_CONDITION_DOC,
             {"firstPut": "ok", "secondPut": "ConditionalCheckFailedException",
              "refusedUpdate": "ConditionalCheckFailedException", "itemOnFailure": {"pk": {"S": "a"}, "v": {"N": "1"}}},
             ddb_conditional_writes),
    Scenario("dynamodb.atomic-counter", f"{COUNTER_THREADS} threads x {COUNTER_ADDS_PER_THREAD} concurrent ADDs",
             DDB_COUNTER_DOC, {"counter": COUNTER_THREADS * COUNTER_ADDS_PER_THREAD}, ddb_atomic_counter),
    Scenario("dynamodb.stream-shape", "NEW_AND_OLD_IMAGES records of put, update, delete", DDB_RECORD_DOC,
             {"eventNames": ["INSERT", "MODIFY", "REMOVE"], "eventSource": ["aws:dynamodb"],
              "keys": [{"pk": {"S": "a"}}] * 3, "images": [[False, True], [True, True], [True, False]],
              "statuses": [[None, "new"], ["new", "done"], ["done", None]], "viewType": ["NEW_AND_OLD_IMAGES"],
              "withCreationTimeAndSize": True, "sequenceNumbersIncrease": True}, ddb_stream_shape),
    Scenario("dynamodb.stream-unchanged", "a put or update that changes nothing writes no stream record",
             DDB_STREAMS_DOC, {"records": [["INSERT", "a"], ["INSERT", "sentinel"]]}, ddb_stream_unchanged_writes),
    Scenario("dynamodb.ttl", "TTL on: expired Number items go with a service REMOVE; others stay", DDB_TTL_DOC,
             {"status": ["ENABLED", "expiresAt"], "expiredReadableBeforeDeletion": True, "expiredDeleted": True,
              "keptLiveAndNonNumber": [True, True], "removeUserIdentity": [TTL_SERVICE_IDENTITY]}, ddb_ttl,
             ours_known="the local cloud's TTL sweeper deletes through DeleteItem, which cannot mark the REMOVE "
                        "with DynamoDB's service identity (ttl_sweeper.py)"),
    Scenario("s3.ranges", "ranged GETs: 206 + Content-Range, suffix, past the end, unsatisfiable 416", S3_GET_DOC,
             {"bytes=10-14": [206, "bytes 10-14/100", "01234"], "bytes=95-": [206, "bytes 95-99/100", "56789"],
              "bytes=-3": [206, "bytes 97-99/100", "789"], "bytes=98-200": [206, "bytes 98-99/100", "89"],
              "bytes=100-110": [416, "InvalidRange"]}, s3_ranges),
    Scenario("s3.conditions", "If-Match / If-None-Match on GET; If-None-Match: * on PUT", S3_CONDITIONAL_WRITE_DOC,
             {"getIfMatchSame": 200, "getIfMatchOther": 412, "getIfNoneMatchSame": 304,
              "putIfNoneMatchStarExisting": [412, "PreconditionFailed"], "putIfNoneMatchStarNew": [200, "ok"],
              "bodyAfter": "v1"}, s3_conditions),
    Scenario("s3.multipart", "5 MiB + 1 B multipart: ETag, size, part 1; a small first part is refused",
             S3_MULTIPART_DOC,
             {"listedParts": [1, 2], "etagIsMd5OfPartMd5sDash2": True, "size": PART_BYTES + 1,
              "part1": [PART_BYTES, 2], "smallFirstPart": "EntityTooSmall"}, s3_multipart),
    Scenario("s3.presigned-form-put", "a presigned PUT sent with a form Content-Type stores its body",
             S3_PRESIGNED_DOC, {"status": 200, "storedBody": "id,note\n1,a=b&c\n"}, s3_presigned_form_put),
]
