"""The local cloud's AWS state survives a restart: a snapshot of moto's backends, restored into a moto that
lost everything (state.py). No local cloud here: a moto server with the request gate, and boto3."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from busline.localcloud import state
from busline.localcloud.state import GATE, StateStore, fingerprint
from busline.localcloud.testing import moto_server

BODY = bytes(index % 251 for index in range(2 * 1024 * 1024 + 3))  # past moto's in-memory buffer


@pytest.fixture(scope="module")
def aws() -> Iterator[dict[str, Any]]:
    state.install_request_gate()
    with moto_server() as endpoint:
        def client(service: str) -> Any:
            return boto3.client(  # type: ignore[call-overload]
                service, endpoint_url=endpoint, region_name="us-east-1",
                aws_access_key_id="testing", aws_secret_access_key="testing",
            )  # fmt: skip
        yield {name: client(name) for name in ("dynamodb", "sqs", "s3", "cognito-idp", "secretsmanager")}


def _given_a_stack(aws: dict[str, Any], suffix: str) -> dict[str, str]:
    aws["dynamodb"].create_table(
        TableName=f"tasks-{suffix}", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
    )  # fmt: skip
    for number in range(3):
        aws["dynamodb"].put_item(TableName=f"tasks-{suffix}", Item={"pk": {"S": f"t{number}"}, "n": {"N": str(number)}})
    queue = aws["sqs"].create_queue(QueueName=f"chunks-{suffix}")["QueueUrl"]
    aws["sqs"].send_message(QueueUrl=queue, MessageBody="first")
    aws["sqs"].send_message(QueueUrl=queue, MessageBody="second")
    in_flight = aws["sqs"].receive_message(QueueUrl=queue, MaxNumberOfMessages=1, VisibilityTimeout=300)
    assert [message["Body"] for message in in_flight["Messages"]] == ["first"]
    aws["s3"].create_bucket(Bucket=f"data-{suffix}")
    aws["s3"].put_object(Bucket=f"data-{suffix}", Key="big.bin", Body=BODY)
    aws["s3"].put_object(Bucket=f"data-{suffix}", Key="small.txt", Body=b"hello")
    pool = aws["cognito-idp"].create_user_pool(PoolName=f"users-{suffix}")["UserPool"]["Id"]
    aws["cognito-idp"].admin_create_user(UserPoolId=pool, Username="alice", MessageAction="SUPPRESS")
    aws["secretsmanager"].create_secret(Name=f"db-{suffix}", SecretString="postgresql://load@db")
    return {"queue": queue, "pool": pool}


def _receive_counts(aws: dict[str, Any], queue: str) -> dict[str, str]:
    answer = aws["sqs"].receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=300, MessageSystemAttributeNames=["All"]
    )
    return {message["Body"]: message["Attributes"]["ApproximateReceiveCount"] for message in answer.get("Messages", [])}


def _everything_deleted(aws: dict[str, Any], suffix: str, names: dict[str, str]) -> None:
    aws["dynamodb"].delete_table(TableName=f"tasks-{suffix}")
    aws["sqs"].delete_queue(QueueUrl=names["queue"])
    aws["s3"].delete_object(Bucket=f"data-{suffix}", Key="big.bin")
    aws["s3"].delete_object(Bucket=f"data-{suffix}", Key="small.txt")
    aws["s3"].delete_bucket(Bucket=f"data-{suffix}")
    aws["cognito-idp"].delete_user_pool(UserPoolId=names["pool"])
    aws["secretsmanager"].delete_secret(SecretId=f"db-{suffix}", ForceDeleteWithoutRecovery=True)


def test_a_restore_brings_back_items_messages_objects_users_and_secrets(aws: dict[str, Any], tmp_path: Path) -> None:
    # Given a stack with items, a queue with one message in flight, objects, a user and a secret, saved
    names = _given_a_stack(aws, "restore")
    store = StateStore(tmp_path)
    assert store.snapshot() is True
    # When moto loses all of it and the snapshot is restored
    _everything_deleted(aws, "restore", names)
    StateStore(tmp_path).restore()
    # Then everything is as it was at the snapshot
    items = aws["dynamodb"].scan(TableName="tasks-restore")["Items"]
    assert sorted((item["pk"]["S"], item["n"]["N"]) for item in items) == [("t0", "0"), ("t1", "1"), ("t2", "2")]
    # the message in flight stays hidden for the rest of its visibility timeout, as it would on AWS
    assert _receive_counts(aws, names["queue"]) == {"second": "1"}
    assert aws["s3"].get_object(Bucket="data-restore", Key="big.bin")["Body"].read() == BODY
    assert aws["s3"].get_object(Bucket="data-restore", Key="small.txt", Range="bytes=1-3")["Body"].read() == b"ell"
    user = aws["cognito-idp"].admin_get_user(UserPoolId=names["pool"], Username="alice")
    assert user["Username"] == "alice"
    assert aws["secretsmanager"].get_secret_value(SecretId="db-restore")["SecretString"] == "postgresql://load@db"


def test_a_clean_stop_hands_messages_in_flight_back_with_their_receive_counts(aws: dict[str, Any], tmp_path: Path) -> None:
    # Given a queue whose first message was received once and is still in flight
    names = _given_a_stack(aws, "handback")
    # When the last snapshot of a clean stop is taken and restored
    assert StateStore(tmp_path).snapshot(hand_back_messages=True) is True
    _everything_deleted(aws, "handback", names)
    StateStore(tmp_path).restore()
    # Then both messages are visible at once, the first one's earlier receive counted
    assert _receive_counts(aws, names["queue"]) == {"first": "2", "second": "1"}


def test_an_s3_body_is_written_once_and_dropped_with_its_object(aws: dict[str, Any], tmp_path: Path) -> None:
    # Given a bucket with two objects, saved twice
    aws["s3"].create_bucket(Bucket="data-blobs")
    aws["s3"].put_object(Bucket="data-blobs", Key="a", Body=b"a" * 10)
    aws["s3"].put_object(Bucket="data-blobs", Key="b", Body=b"b" * 20)
    store = StateStore(tmp_path)
    assert store.snapshot() is True
    first = {blob.name: blob.stat().st_mtime_ns for blob in store.blobs.iterdir()}
    aws["s3"].put_object(Bucket="data-blobs", Key="c", Body=b"c")  # a change, so the next snapshot is due
    assert store.snapshot_if_changed() is True
    second = {blob.name: blob.stat().st_mtime_ns for blob in store.blobs.iterdir()}
    bodies = {blob.name: blob.read_bytes() for blob in store.blobs.iterdir()}
    # Then the bodies already on disk were not written again; the new one was added
    assert {name: second[name] for name in first} == first
    assert [(store.blobs / name).read_bytes() for name in set(second) - set(first)] == [b"c"]
    # When an object is deleted and the state saved again
    aws["s3"].delete_object(Bucket="data-blobs", Key="b")
    assert store.snapshot() is True
    # Then its body is gone from disk too, and only its
    third = {blob.name for blob in store.blobs.iterdir()}
    assert [bodies[name] for name in set(second) - third] == [b"b" * 20]
    assert store.snapshot_if_changed() is False  # nothing served since


def test_a_snapshot_waits_for_requests_in_flight_and_gives_up_rather_than_stall_them() -> None:
    # Given a request being served
    served = threading.Event()
    release = threading.Event()

    def request() -> None:
        with GATE.shared():
            served.set()
            release.wait(5)

    worker = threading.Thread(target=request)
    worker.start()
    served.wait(5)
    # When a snapshot wants the gate for 0.2 s
    with GATE.exclusive(0.2) as acquired:
        # Then it does not get it, and a new request still goes through meanwhile
        assert acquired is False
        with GATE.shared():
            pass
    release.set()
    worker.join(5)
    with GATE.exclusive(0.2) as acquired:
        assert acquired is True


def test_the_state_belongs_to_one_template_parameters_and_ports() -> None:
    cfn = {"Resources": {"Tasks": {"Type": "AWS::DynamoDB::Table"}}}
    base = fingerprint(cfn, {"StepTimeout": "8"}, "us-east-1", {"rest": "http://127.0.0.1:3000"})
    assert base == fingerprint(cfn, {"StepTimeout": "8"}, "us-east-1", {"rest": "http://127.0.0.1:3000"})
    assert len({
        base,
        fingerprint(cfn, {"StepTimeout": "9"}, "us-east-1", {"rest": "http://127.0.0.1:3000"}),
        fingerprint(cfn, {"StepTimeout": "8"}, "eu-west-1", {"rest": "http://127.0.0.1:3000"}),
        fingerprint(cfn, {"StepTimeout": "8"}, "us-east-1", {"rest": "http://127.0.0.1:3100"}),
        fingerprint({"Resources": {}}, {"StepTimeout": "8"}, "us-east-1", {"rest": "http://127.0.0.1:3000"}),
    }) == 5


def test_new_bodies_are_copied_while_requests_go_on(aws: dict[str, Any], tmp_path: Path) -> None:
    # Given a new object, and a request being served that keeps the snapshot from its quiet moment
    aws["s3"].create_bucket(Bucket="data-busy")
    aws["s3"].put_object(Bucket="data-busy", Key="big.bin", Body=BODY)
    store = StateStore(tmp_path)
    with GATE.shared():
        # When a snapshot is tried
        saved = store.snapshot()
    # Then it waits for no one: nothing is saved yet, but the body is already on disk
    assert saved is False
    assert not (tmp_path / "state" / "aws.pickle").exists()
    assert BODY in [blob.read_bytes() for blob in store.blobs.iterdir()]
    # and the next snapshot, with the gate free, takes it without copying it again
    before = {blob.name for blob in store.blobs.iterdir()}
    assert store.snapshot() is True
    assert before <= {blob.name for blob in store.blobs.iterdir()}


def test_a_body_stored_just_before_the_quiet_moment_is_saved_after_it(
    aws: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an object stored after the copies made ahead of the quiet moment (none are made here)
    aws["s3"].create_bucket(Bucket="data-late")
    aws["s3"].put_object(Bucket="data-late", Key="big.bin", Body=BODY)
    store = StateStore(tmp_path)
    monkeypatch.setattr(store, "_write_new_bodies", lambda: None)
    written_during_the_moment: list[int] = []
    snapshot = store._snapshot

    def counting_blobs(hand_back_messages: bool) -> bool:
        real_exclusive = GATE.exclusive

        def exclusive(wait_s: float) -> Any:
            context = real_exclusive(wait_s)

            class Watched:
                def __enter__(self) -> Any:
                    return context.__enter__()

                def __exit__(self, *exc: object) -> Any:
                    written_during_the_moment.append(len(list(store.blobs.iterdir())))
                    return context.__exit__(*exc)

            return Watched()

        monkeypatch.setattr(GATE, "exclusive", exclusive)
        return snapshot(hand_back_messages)

    monkeypatch.setattr(store, "_snapshot", counting_blobs)
    # When a snapshot is taken, and the object later lost and restored
    assert store.snapshot() is True
    aws["s3"].delete_object(Bucket="data-late", Key="big.bin")
    monkeypatch.undo()
    StateStore(tmp_path).restore()
    # Then no body was written while requests waited, and the restored object has its bytes
    assert written_during_the_moment == [0]
    assert aws["s3"].get_object(Bucket="data-late", Key="big.bin")["Body"].read() == BODY
    aws["s3"].delete_object(Bucket="data-late", Key="big.bin")
    aws["s3"].delete_bucket(Bucket="data-late")


def test_a_restored_stream_keeps_its_records_but_not_the_shard_iterators_handed_out(
    aws: dict[str, Any], tmp_path: Path
) -> None:
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    # Given a table with a stream of two records, read once through a shard iterator
    streams = boto3.client("dynamodbstreams", endpoint_url=aws["dynamodb"].meta.endpoint_url, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
    stream_arn = aws["dynamodb"].create_table(
        TableName="streamed", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )["TableDescription"]["LatestStreamArn"]  # fmt: skip
    for key in ("a", "b"):
        aws["dynamodb"].put_item(TableName="streamed", Item={"pk": {"S": key}})

    def records_from_the_start() -> list[str]:
        shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
        iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard,
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        return [record["dynamodb"]["Keys"]["pk"]["S"] for record in streams.get_records(ShardIterator=iterator)["Records"]]

    assert records_from_the_start() == ["a", "b"]
    backend = dynamodbstreams_backends["123456789012"]["us-east-1"]
    assert len(backend.shard_iterators) == 2  # the one taken, and the one GetRecords handed back
    # When it is saved, lost and restored
    assert StateStore(tmp_path).snapshot() is True
    aws["dynamodb"].delete_table(TableName="streamed")
    StateStore(tmp_path).restore()
    # Then the records are read again from the start, and only the iterators of that read are held
    backend = dynamodbstreams_backends["123456789012"]["us-east-1"]
    assert backend.shard_iterators == {}
    assert records_from_the_start() == ["a", "b"]
    assert len(backend.shard_iterators) == 2
    aws["dynamodb"].delete_table(TableName="streamed")
