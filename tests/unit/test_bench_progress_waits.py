"""The bench's progress waits per write (busline/bench/progress_waits.py): exact figures on small timelines."""

from __future__ import annotations

import boto3
from moto import mock_aws

from busline.bench.cloud import task_writes_ms
from busline.bench.progress_waits import fewest_late_writes, per_write_section, write_waits_ms

# subscribe answered the state written at 900; two pushes followed
FRAMES = [(1000.0, 900.0), (1300.0, 1200.0), (1600.0, 1500.0)]
WRITES = [800.0, 900.0, 1000.0, 1100.0, 1200.0, 1400.0, 1500.0]


def test_each_write_after_the_subscribe_answer_waits_for_the_first_frame_showing_it() -> None:
    # Given writes before, at and after the state subscribe answered, and one no frame shows
    writes = [*WRITES, 1700.0]

    # When the waits are measured
    waits = write_waits_ms(FRAMES, writes)

    # Then only the five writes after 900 and shown by a frame count, each until the first frame showing it
    assert waits == [300.0, 200.0, 100.0, 200.0, 100.0]


def test_no_frames_means_no_waits() -> None:
    assert write_waits_ms([], WRITES) == []


def test_a_pacing_that_waits_for_the_second_write_keeps_every_wait_within_the_bound() -> None:
    # Given writes every 100 ms and frames at least 250 ms apart
    writes = [0.0, 100.0, 200.0, 300.0]

    # When the fewest late writes are sought for a bound of 150 ms
    late = fewest_late_writes(writes, frames=1, window_ms=250, within_ms=150)

    # Then none: frames at 100 (waits 100, 0) and 350 (waits 150, 50)
    assert late == 0


def test_a_tighter_bound_leaves_one_write_late_whatever_the_pacing() -> None:
    # Given the same writes and a bound of 100 ms
    # When the fewest late writes are sought
    late = fewest_late_writes([0.0, 100.0, 200.0, 300.0], frames=1, window_ms=250, within_ms=100)

    # Then one: frames at 0 and 300 leave 100 waiting 200; at 100 and 350, 200 waits 150; later is worse
    assert late == 1


def test_a_frame_may_go_out_between_writes_once_its_gap_is_over() -> None:
    # Given two writes closer than the gap: a frame at 0, the next at 250 shows the write at 200 after 50 ms
    assert fewest_late_writes([0.0, 200.0], frames=1, window_ms=250, within_ms=150) == 0
    # And with writes 10 ms apart for a second, each of the four gaps between five frames leaves the nine
    # writes of its first 100 ms late (frames at 150, 400, 650, 900 and 1,150, or any other placing)
    burst = [float(ms) for ms in range(0, 1000, 10)]
    assert fewest_late_writes(burst, frames=1, window_ms=250, within_ms=150) == 36


def test_no_writes_no_late_writes() -> None:
    assert fewest_late_writes([], frames=1, window_ms=250, within_ms=150) == 0


def test_the_section_pools_the_runs_and_counts_their_writes_after_subscribe() -> None:
    # Given two runs: the timeline above, and one whose only write after subscribe is shown 40 ms later
    runs = [(FRAMES, WRITES), ([(5000.0, 4900.0), (5100.0, 5060.0)], [4900.0, 5060.0])]

    # When the section is made for 4 frames a second and a bound of 150 ms
    section = per_write_section(runs, frames_per_second=4, within_ms=150)

    # Then the six waits (40, 100, 100, 200, 200, 300) are pooled and ranked as the per-frame figures are,
    # and no pacing needs to leave any of those six writes late
    assert (section["p50"], section["p95"], section["samples"]) == (200.0, 300.0, 6)
    assert (section["writes"], section["fewestLate"], section["fewestLateShare"]) == (6, 0, 0.0)


@mock_aws
def test_task_writes_are_read_from_the_tasks_table_stream() -> None:
    # Given a tasks table with a stream, two tasks written three and two times, and a third task
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    dynamodb.create_table(
        TableName="tasks",
        KeySchema=[{"AttributeName": "taskId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "taskId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    for task_id, updated_ms in [("a", 30), ("b", 10), ("a", 10), ("c", 5), ("a", 20), ("b", 40)]:
        dynamodb.put_item(TableName="tasks", Item={"taskId": {"S": task_id}, "updatedAtMs": {"N": str(updated_ms)}})
    streams = boto3.client("dynamodbstreams", region_name="us-east-1")

    # When the writes of a and b are read
    writes = task_writes_ms(dynamodb, streams, "tasks", {"a", "b"})

    # Then each task has its writes' stamps, in order, and the third task is not read
    assert writes == {"a": [10.0, 20.0, 30.0], "b": [10.0, 40.0]}


def test_four_frames_in_any_second_show_a_burst_of_writes_at_once() -> None:
    # Given writes at 0, 50 and 100 ms, then one at 400 and one at 1,060
    writes = [0.0, 50.0, 100.0, 400.0, 1060.0]
    # When at most 4 frames may fall in any second / Then none waits more than 40 ms: a frame at each write
    assert fewest_late_writes(writes, frames=4, window_ms=1000, within_ms=40) == 0
    # And with one frame per 250 ms, the writes at 50 and 100 must
    assert fewest_late_writes(writes, frames=1, window_ms=250, within_ms=40) == 2
    # And five writes 10 ms apart with a bound of 5 ms: the fifth frame is due a second after the first
    assert fewest_late_writes([0.0, 10.0, 20.0, 30.0, 40.0], frames=4, window_ms=1000, within_ms=5) == 1
