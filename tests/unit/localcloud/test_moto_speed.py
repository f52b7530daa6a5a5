"""moto_speed changes how fast moto answers, never what it answers."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest

from busline.localcloud.moto_speed import make_moto_calls_fast
from busline.localcloud.testing import moto_server


def test_queue_counts_retention_and_request_ids_answer_as_before() -> None:
    # Given the fast moto, a queue with one visible, one in-flight and one delayed message
    make_moto_calls_fast()
    with moto_server() as endpoint:
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        queue = sqs.create_queue(QueueName="speed", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
        sqs.send_message(QueueUrl=queue, MessageBody="in flight")
        taken = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=60)
        sqs.send_message(QueueUrl=queue, MessageBody="visible")
        sqs.send_message(QueueUrl=queue, MessageBody="delayed", DelaySeconds=60)
        # When its attributes are read
        attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
        # Then the counts are those of moto's per-message properties
        assert (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"],
                attributes["ApproximateNumberOfMessagesDelayed"]) == ("1", "1", "1")
        assert attributes["MessageRetentionPeriod"] == "60"
        # a message within its retention period is delivered; the request id keeps its 52 characters
        visible = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=60)
        assert [message["Body"] for message in taken["Messages"] + visible["Messages"]] == ["in flight", "visible"]
        assert len(visible["ResponseMetadata"]["RequestId"]) == 52


def test_a_recording_keeps_an_s3_objects_size_not_its_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the fast moto recording requests, and a bucket
    from moto.moto_api import recorder

    make_moto_calls_fast()
    recording = tmp_path / "recording.jsonl"
    monkeypatch.setattr(recorder, "_location", str(recording))
    with moto_server() as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.create_bucket(Bucket="recorded")
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/recorder/start-recording", method="POST"))
        try:
            # When a 1 MiB object and a 10-byte one are put
            large, small = bytes(range(256)) * 4096, b"0123456789"
            s3.put_object(Bucket="recorded", Key="large", Body=large)
            s3.put_object(Bucket="recorded", Key="small", Body=small)
            stored = [s3.get_object(Bucket="recorded", Key=key)["Body"].read() for key in ("large", "small")]
        finally:
            urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/recorder/stop-recording", method="POST"))
    # Then both are stored whole, the large one recorded by its Content-Length only, the small one with its bytes
    assert stored == [large, small]
    puts = [json.loads(line) for line in recording.read_text().splitlines() if json.loads(line)["method"] == "PUT"]
    assert [(entry["headers"]["Content-Length"], entry["body"]) for entry in puts] == [
        (str(len(large)), ""), ("10", "MDEyMzQ1Njc4OQ=="),
    ]


RICH_ITEM = {
    "taskId": {"S": "t-1"},
    "empty": {"S": ""},
    "count": {"N": "336776"},
    "ratio": {"N": "0.25"},
    "done": {"BOOL": False},
    "nothing": {"NULL": True},
    "chunks": {"NS": ["0", "1", "16"]},
    "owners": {"SS": ["ana", "bob"]},
    "phases": {"M": {"load": {"M": {"done": {"N": "3"}, "status": {"S": "running"}, "none": {"M": {}}}},
                      "list": {"L": [{"S": "a"}, {"N": "1"}, {"L": []}, {"M": {"x": {"BOOL": True}}}]}}},
}


def _serialized_both_ways(operation: str, result: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    from moto.core.serialize import JSONSerializer, XFormedAttributePicker
    from moto.core.utils import get_service_model

    from busline.localcloud import moto_speed

    make_moto_calls_fast()
    model = get_service_model("dynamodb").operation_model(operation)

    def body() -> str:
        serializer = JSONSerializer(operation_model=model, pretty_print=False, value_picker=XFormedAttributePicker())
        return str(serializer.serialize(result)["body"])

    direct = body()
    with monkeypatch.context() as generic:
        generic.setattr(moto_speed, "_DIRECT_MEMBERS", frozenset())  # every value takes the generic path
        return direct, body()


@pytest.mark.parametrize(
    ("operation", "result"),
    [
        ("GetItem", {"Item": RICH_ITEM}),
        ("UpdateItem", {"Attributes": RICH_ITEM}),
        ("Query", {"Items": [RICH_ITEM, {"taskId": {"S": "t-2"}}], "Count": 2, "ScannedCount": 2}),
        ("GetItem", {"Item": {**RICH_ITEM, "blob": {"B": "AAEC"}, "blobs": {"BS": ["AAEC"]}}}),
    ],
    ids=["GetItem", "UpdateItem", "Query", "binary values"],
)
def test_items_are_serialized_exactly_as_the_generic_serializer_does(
    operation: str, result: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a result holding every kind of attribute value (nested maps and lists, sets, empty ones)
    # When it is serialized directly and by the generic serializer
    direct, generic = _serialized_both_ways(operation, result, monkeypatch)
    # Then the two bodies are the same bytes
    assert direct == generic
    assert json.loads(direct)[next(iter(result))] is not None


def _client_with_task_table(endpoint: str, table: str) -> Any:
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    dynamodb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "taskId", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "taskId", "AttributeType": "S"}])
    return dynamodb


def test_an_item_reads_back_as_it_was_written() -> None:
    # Given the fast moto and a table
    make_moto_calls_fast()
    with moto_server() as endpoint:
        dynamodb = _client_with_task_table(endpoint, "speed")
        item = {**RICH_ITEM, "blob": {"B": b"\x00\x01\x02"}}
        # When it is put, read, and updated with ALL_NEW
        dynamodb.put_item(TableName="speed", Item=item)
        read = dynamodb.get_item(TableName="speed", Key={"taskId": {"S": "t-1"}}, ConsistentRead=True)["Item"]
        updated = dynamodb.update_item(TableName="speed", Key={"taskId": {"S": "t-1"}}, UpdateExpression="SET #c = :c",
                                       ExpressionAttributeNames={"#c": "count"},
                                       ExpressionAttributeValues={":c": {"N": "7"}}, ReturnValues="ALL_NEW")["Attributes"]
        # Then it reads back exactly as written (sets in any order), and the update changed only its count
        def canonical(value: dict[str, object]) -> dict[str, object]:
            return {name: {kind: sorted(v) if kind in ("SS", "NS") else v for kind, v in av.items()}  # type: ignore[union-attr]
                    for name, av in value.items()}
        assert canonical(read) == canonical(item)
        assert canonical(updated) == canonical({**item, "count": {"N": "7"}})


def test_an_update_expression_parsed_once_applies_each_calls_own_values_and_errors() -> None:
    # Given the fast moto and a table with one counter item
    make_moto_calls_fast()
    with moto_server() as endpoint:
        dynamodb = _client_with_task_table(endpoint, "parsed")
        key = {"taskId": {"S": "t-1"}}

        def add(amount: str, expression: str = "ADD #n :n SET #s = :s") -> dict[str, object]:
            return dynamodb.update_item(  # type: ignore[no-any-return]
                TableName="parsed", Key=key, UpdateExpression=expression,
                ExpressionAttributeNames={"#n": "done", "#s": "status"},
                ExpressionAttributeValues={":n": {"N": amount}, ":s": {"S": f"after {amount}"}},
                ReturnValues="ALL_NEW")["Attributes"]

        # When the same expression runs three times with different values, then a broken one twice
        results = [add("1"), add("2"), add("4")]
        errors = []
        for _ in range(2):
            with pytest.raises(dynamodb.exceptions.ClientError) as raised:
                add("8", "ADD #n :n SET #s = :s, #n = ")
            errors.append(raised.value.response["Error"]["Code"])
        # Then each call applied its own values to the item as it stood, and the broken one is refused each time
        assert [(r["done"], r["status"]) for r in results] == [
            ({"N": "1"}, {"S": "after 1"}), ({"N": "3"}, {"S": "after 2"}), ({"N": "7"}, {"S": "after 4"})]
        assert errors == ["ValidationException", "ValidationException"]
        # and an unused placeholder is still named as one, although the expression was parsed before
        with pytest.raises(dynamodb.exceptions.ClientError) as unused:
            dynamodb.update_item(TableName="parsed", Key=key, UpdateExpression="ADD #n :n SET #s = :s",
                                 ExpressionAttributeNames={"#n": "done", "#s": "status", "#x": "extra"},
                                 ExpressionAttributeValues={":n": {"N": "1"}, ":s": {"S": "x"}})
        assert "#x" in unused.value.response["Error"]["Message"]


def test_an_items_size_is_measured_as_moto_measures_it() -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType

    from busline.localcloud import moto_speed

    # Given every kind of attribute value, a binary one and sets of many members
    values = {**RICH_ITEM, "blob": {"B": b"\x00\x01\x02"}, "blobs": {"BS": [b"\x00", b"\x01\x02"]},
              "text": {"S": "crème brûlée"}, "many": {"NS": [str(n) for n in range(170)]},
              "nested": {"L": [{"M": {"ids": {"SS": ["é", "b"]}, "deep": {"L": [{"N": "-1.5"}]}}}]}}
    # When each is measured directly and by moto's own method (every member wrapped in a DynamoType)
    make_moto_calls_fast()
    direct = {name: DynamoType(value).size() for name, value in values.items()}
    original = {name: _moto_size(DynamoType(value)) for name, value in values.items()}
    # Then the sizes are the same, attribute by attribute
    assert direct == original
    assert (direct["many"], direct["text"], direct["blob"]) == (sum(len(str(n)) for n in range(170)), 15, 3)
    assert moto_speed._nested_size({"N": "12"}) == 2


def _moto_size(value: object) -> int:
    """moto 5's DynamoType.size, as it reads before moto_speed replaces it."""
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.utilities import bytesize

    assert isinstance(value, DynamoType)
    if value.is_number():
        return len(str(value.value))
    if value.is_set():
        return sum(_moto_size(DynamoType({value.type[0]: member})) for member in value.value)
    if value.is_list():
        return sum(_moto_size(member) for member in value.value)
    if value.is_map():
        return sum(bytesize(key) + _moto_size(DynamoType(member)) for key, member in value.value.items())
    if isinstance(value.value, bool):
        return 1
    return bytesize(value.value)


# Updates of every kind, valid and not, for the differential test below: (expression, names, values, condition)
_UPDATES: list[tuple[str, dict[str, str], dict[str, Any], str | None]] = [
    ("SET #m = :m, #l = :l, #n = :n", {"#m": "map", "#l": "list", "#n": "num"},
     {":m": {"M": {"k": {"S": "v"}}}, ":l": {"L": [{"N": "1"}]}, ":n": {"N": "5"}}, None),
    ("SET #n = #n + :n, #m.#k = :v, #l = list_append(#l, :l), #s = if_not_exists(#s, :s)",
     {"#n": "num", "#m": "map", "#k": "k2", "#l": "list", "#s": "since"},
     {":n": {"N": "2"}, ":v": {"S": "w"}, ":l": {"L": [{"S": "x"}]}, ":s": {"S": "t0"}}, None),
    ("ADD #c :one, #set :members SET #s = if_not_exists(#s, :s) DELETE #gone :gone",
     {"#c": "count", "#set": "chunks", "#s": "since", "#gone": "failed"},
     {":one": {"N": "1"}, ":members": {"NS": ["1", "2"]}, ":s": {"S": "t1"}, ":gone": {"SS": ["load:0"]}}, None),
    ("ADD #c :one, #set :members", {"#c": "count", "#set": "chunks"},
     {":one": {"N": "1"}, ":members": {"NS": ["3"]}, ":chunk": {"N": "3"}}, "NOT contains(#set, :chunk)"),
    ("ADD #c :one, #set :members", {"#c": "count", "#set": "chunks"},  # chunk 3 counted: the condition fails
     {":one": {"N": "1"}, ":members": {"NS": ["3"]}, ":chunk": {"N": "3"}}, "NOT contains(#set, :chunk)"),
    ("REMOVE #l[0], #m.#k", {"#l": "list", "#m": "map", "#k": "k"}, {}, None),
    ("ADD a :x ADD b :x", {}, {":x": {"N": "1"}}, None),  # two ADD clauses
    ("SET #a = :x, #b = :x", {"#a": "p", "#b": "q"}, {":x": {"N": "1"}}, None),
    ("SET #a = :x, #b = :x", {"#a": "p", "#b": "p"}, {":x": {"N": "1"}}, None),  # same tree, overlapping now
    ("SET #a = :x, #b = :x", {"#a": "p", "#b": "q"}, {":x": {"N": "2"}}, None),
    ("SET #a = :x", {"#a": "q"}, {":x": {"N": "3"}}, None),
    ("SET #a = :x", {"#a": "taskId"}, {":x": {"S": "other"}}, None),  # same tree, the key now
    ("SET #a = :x", {"#a": "q"}, {":x": {"N": "4"}}, None),
    ("SET #a = :x", {"#a": "taskId"}, {":x": {"S": "other"}}, None),  # refused again
    ("SET #n = #n + :bad", {"#n": "num"}, {":bad": {"S": "text"}}, None),
    ("SET #x = list_append(#missing, :l)", {"#x": "x", "#missing": "missing"}, {":l": {"L": []}}, None),
    ("SET #a = :x", {"#a": "r", "#n": "num", "#m": "map"}, {":x": {"N": "1"}, ":lo": {"N": "1"}, ":hi": {"N": "9"}},
     "(#n BETWEEN :lo AND :hi) AND attribute_exists(#m.k2) AND size(#m) < :hi"),
    ("SET #a = :x", {"#a": "r", "#n": "num"}, {":x": {"N": "2"}, ":lo": {"N": "1"}, ":hi": {"N": "9"}},
     "#n IN (:lo, :hi) OR attribute_not_exists(#n)"),  # num is 7: refused
    ("SET #a = :x", {"#a": "r", "#n": "num"}, {":x": {"N": "3"}, ":lo": {"N": "7"}, ":hi": {"N": "9"}},
     "#n IN (:lo, :hi) OR attribute_not_exists(#n)"),  # the same condition, now met
    ("SET #a = :x", {"#a": "r"}, {":x": {"N": "4"}}, "#a = = :x"),  # does not parse
    ("SET #a = :x", {"#a": "r"}, {":x": {"N": "4"}}, "#a ! :x"),  # does not tokenize
    ("SET #a = :x", {"#a": "r"}, {":x": {"N": "4"}}, "#a ! :x"),  # nor the second time
]

_APPLY_UPDATES = r'''
import json, os, sys
os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
import boto3
from moto import mock_aws
if sys.argv[1] == "fast":
    from busline.localcloud.moto_speed import make_moto_calls_fast
    make_moto_calls_fast()
outcomes = []
with mock_aws():
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "taskId", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "taskId", "AttributeType": "S"}])
    for expression, names, values, condition in json.loads(sys.stdin.read()):
        request = {"TableName": "t", "Key": {"taskId": {"S": "t-1"}}, "UpdateExpression": expression,
                   "ReturnValues": "ALL_NEW"}
        if names:
            request["ExpressionAttributeNames"] = names
        if values:
            request["ExpressionAttributeValues"] = values
        if condition:
            request["ConditionExpression"] = condition
        try:
            item = dynamodb.update_item(**request)["Attributes"]
            outcomes.append({k: {t: sorted(v) if t in ("SS", "NS") else v for t, v in av.items()}
                             for k, av in sorted(item.items())})
        except Exception as error:
            outcomes.append([type(error).__name__, str(error)])
print(json.dumps(outcomes))
'''


def _updates_applied(moto: str) -> list[Any]:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _APPLY_UPDATES, moto], input=json.dumps(_UPDATES), text=True,
                          capture_output=True, check=True, timeout=120)
    return list(json.loads(done.stdout))


def test_updates_valid_and_refused_answer_as_moto_itself_answers() -> None:
    # Given moto as it comes, and the fast moto (trees shared and copied node by node, tree checks once)
    # When the same updates are applied by each, in order: valid ones, a failed condition, and expressions
    # refused for two ADD clauses, overlapping paths, the key, a type mismatch, a missing list and conditions
    # unmet or unreadable, some of them with the very tree or condition an earlier update passed
    pristine, fast = _updates_applied("pristine"), _updates_applied("fast")
    # Then every answer is the same: each item as it stood, each refusal with its error and message
    assert fast == pristine
    refused = {index: outcome[1] for index, outcome in enumerate(fast) if isinstance(outcome, list)}
    assert sorted(refused) == [4, 6, 8, 11, 13, 14, 15, 17, 19, 20, 21]
    assert "overlap" in refused[8]
    assert refused[11] == refused[13]
    assert refused[11].endswith("Cannot update attribute taskId. This attribute is part of the key")
    assert refused[20] == refused[21] == "Cannot parse condition starting at:! :x"
    assert fast[12]["q"] == {"N": "4"} and fast[18]["r"] == {"N": "3"} and len(fast) == 22


def _multipart(metadata: dict[str, str], parts: list[bytes]) -> Any:
    from moto.s3.models import FakeMultipart
    from moto.utilities.utils import CaseInsensitiveDict

    upload = FakeMultipart("staged/source.csv", CaseInsensitiveDict(metadata), "123456789012", "us-east-1")
    for number, value in enumerate(parts, 1):
        upload.set_part(number, value)
    return upload


def _listed(upload: Any, numbers: list[int]) -> list[tuple[int, str]]:
    return [(number, upload.parts[number].etag) for number in numbers]


@pytest.mark.parametrize(
    "metadata",
    [
        {},  # S3's default: a CRC64NVME of the whole object
        {"x-amz-checksum-algorithm": "CRC32"},  # a checksum of the parts' checksums
        {"x-amz-checksum-algorithm": "SHA256"},
        {"x-amz-checksum-algorithm": "CRC32", "x-amz-checksum-type": "FULL_OBJECT"},
    ],
)
def test_a_completed_upload_is_the_object_etag_and_checksum_moto_makes(
    metadata: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the fast moto, and an upload of two 5 MiB parts and a short last one
    from busline.localcloud import moto_speed

    make_moto_calls_fast()
    monkeypatch.setattr("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", 5 * 1024 * 1024)
    parts = [bytes([number]) * (5 * 1024 * 1024) + b"end of part" for number in (1, 2)] + [b"last rows\n"]
    ours, motos = _multipart(metadata, parts), _multipart(metadata, parts)

    # When both complete it, ours and moto's own
    completed = ours.complete(iter(_listed(ours, [1, 2, 3])))
    expected = moto_speed.moto_multipart_complete(motos, iter(_listed(motos, [1, 2, 3])))

    # Then the object, its ETag and its checksum are the same, and the object is the parts in order
    assert completed == expected
    assert completed[0] == b"".join(parts)
    assert completed[1].endswith("-3")


def test_a_completion_refuses_what_moto_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the fast moto and an upload whose first part is under S3's 5 MiB minimum
    from moto.s3.exceptions import EntityTooSmall, InvalidPart, MalformedXML

    make_moto_calls_fast()
    monkeypatch.setattr("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", 5 * 1024 * 1024)
    upload = _multipart({}, [b"short", b"rest"])

    # When it is completed with that part first, with a part's ETag wrong, with a part never uploaded, with none
    # Then each is refused as S3 (and moto) refuse it
    with pytest.raises(EntityTooSmall):
        upload.complete(iter(_listed(upload, [1, 2])))
    with pytest.raises(InvalidPart):
        upload.complete(iter([(2, '"0123456789abcdef0123456789abcdef"')]))
    with pytest.raises(InvalidPart):
        upload.complete(iter([(7, upload.parts[2].etag)]))
    with pytest.raises(MalformedXML):
        upload.complete(iter([]))


def test_a_ranged_get_answers_the_bytes_and_headers_s3_answers() -> None:
    # Given the fast moto and a 6 MiB object (past moto's 5 MiB in-memory buffer: its bytes are on disk)
    from botocore.exceptions import ClientError

    make_moto_calls_fast()
    body = bytes(range(256)) * (6 * 4096)
    size = len(body)
    with moto_server() as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.create_bucket(Bucket="ranges")
        s3.put_object(Bucket="ranges", Key="source.csv", Body=body)
        # When ranges are read: plain ones, one running past the end, a suffix, one backwards, one past the end
        answers = {}
        for span in ("bytes=0-9", "bytes=5242870-5242889", f"bytes={size - 4}-", "bytes=100-99999999",
                     "bytes=-10", "bytes=10-5", f"bytes={size}-"):  # fmt: skip
            try:
                got = s3.get_object(Bucket="ranges", Key="source.csv", Range=span)
                answers[span] = (got["ResponseMetadata"]["HTTPStatusCode"], got.get("ContentRange"),
                                 got["ContentLength"], got["Body"].read())  # fmt: skip
            except ClientError as error:
                answers[span] = (error.response["ResponseMetadata"]["HTTPStatusCode"], error.response["Error"]["Code"])
        # Then each answer is S3's: the bytes asked for (up to the end), the whole object for what is not a plain
        # range, and InvalidRange past the end
        assert answers == {
            "bytes=0-9": (206, f"bytes 0-9/{size}", 10, body[:10]),
            "bytes=5242870-5242889": (206, f"bytes 5242870-5242889/{size}", 20, body[5242870:5242890]),
            f"bytes={size - 4}-": (206, f"bytes {size - 4}-{size - 1}/{size}", 4, body[-4:]),
            "bytes=100-99999999": (206, f"bytes 100-{size - 1}/{size}", size - 100, body[100:]),
            "bytes=-10": (206, f"bytes {size - 10}-{size - 1}/{size}", 10, body[-10:]),
            "bytes=10-5": (200, None, size, body),
            f"bytes={size}-": (416, "InvalidRange"),
        }
        # And the whole object still reads whole
        assert s3.get_object(Bucket="ranges", Key="source.csv")["Body"].read() == body
