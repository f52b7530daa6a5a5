"""`busline dlq …` against moto (mock_aws): depths, non-consuming show, selective replay, dry run, purge."""

from __future__ import annotations

import json
import re

import typer
from botocore.exceptions import ClientError
from busline_core.contracts import Phase
from busline_core.task_state import ChunkFailedFinally, TaskAbandoned
from typer.testing import CliRunner

from busline.cli import dlq


def _run(runner: CliRunner, app: typer.Typer, deployment, *args: str):
    return runner.invoke(app, ["dlq", *args, "--endpoints", str(deployment.endpoints_file)])


def _row(output: str, name: str) -> list[str]:
    """The cells of the table row that mentions `name` (rich draws cells separated by │)."""
    line = next(line for line in output.splitlines() if name in line)
    return [cell.strip() for cell in line.split("│") if cell.strip()]


def test_list_shows_exact_depth_and_source_of_every_dlq(runner, cli_app, deployment):
    # Given 2 messages in the transform DLQ, 1 in the load DLQ and none in the extract DLQ
    deployment.dead_letter("transform", "task-a", chunk=0)
    deployment.dead_letter("transform", "task-b", chunk=3)
    deployment.dead_letter("load", "task-a", chunk=1)

    # When listing the DLQs
    result = _run(runner, cli_app, deployment, "list")

    # Then each DLQ shows its exact depth next to its source queue
    assert result.exit_code == 0, result.output + result.stderr
    assert _row(result.stdout, "busline-ExtractDeadLetterQueue") == ["extract", "busline-ExtractDeadLetterQueue", "0", "0",
                                                         "busline-ExtractQueue", "0"]
    assert _row(result.stdout, "busline-TransformDeadLetterQueue") == ["transform", "busline-TransformDeadLetterQueue", "2", "0",
                                                           "busline-TransformQueue", "0"]
    assert _row(result.stdout, "busline-LoadDeadLetterQueue") == ["load", "busline-LoadDeadLetterQueue", "1", "0",
                                                      "busline-LoadQueue", "0"]


def test_show_lists_messages_with_task_error_and_does_not_consume_them(runner, cli_app, deployment):
    # Given a failed task with its error on the task item and two of its chunks in the transform DLQ
    deployment.failed_task("task-a", ChunkFailedFinally(Phase.TRANSFORM, 3, "boom in chunk 3"))
    first = deployment.dead_letter("transform", "task-a", chunk=3)
    second = deployment.dead_letter("transform", "task-a", chunk=4)

    # When showing the transform DLQ
    result = _run(runner, cli_app, deployment, "show", "--queue", "transform")

    # Then both messages are listed with task, phase, chunk, receive count and the task's error
    assert result.exit_code == 0, result.output + result.stderr
    assert "Dead-lettered messages in busline-TransformDeadLetterQueue" in result.stdout
    assert _row(result.stdout, first)[:5] == [first, "task-a", "transform", "3", "1"]
    assert _row(result.stdout, second)[:5] == [second, "task-a", "transform", "4", "1"]
    assert result.stdout.count("phase transform, chunk 3: boom in chunk 3") == 2
    assert "2 message(s) shown" in result.stdout
    # And they are all still there and visible at once
    assert deployment.depth(deployment.dlq_url("transform")) == 2


def test_show_respects_limit_and_releases_the_rest(runner, cli_app, deployment):
    # Given 12 messages in the load DLQ (more than one receive batch)
    for chunk in range(12):
        deployment.dead_letter("load", "task-big", chunk=chunk)

    # When showing at most 5
    result = _run(runner, cli_app, deployment, "show", "--queue", "busline-LoadDeadLetterQueue", "--limit", "5")

    # Then exactly 5 rows are shown and all 12 messages stay visible in the DLQ
    assert result.exit_code == 0, result.output + result.stderr
    assert "5 message(s) shown" in result.stdout
    assert len(re.findall(r"task-big", result.stdout)) == 5
    assert deployment.depth(deployment.dlq_url("load")) == 12


def test_replay_task_moves_only_that_tasks_messages(runner, cli_app, deployment):
    # Given three transform messages of task-a and two of task-b in the transform DLQ
    a_ids = {deployment.dead_letter("transform", "task-a", chunk=chunk) for chunk in range(3)}
    for chunk in range(2):
        deployment.dead_letter("transform", "task-b", chunk=chunk)

    # When replaying task-a only
    result = _run(runner, cli_app, deployment, "replay", "--task", "task-a")

    # Then exactly task-a's three messages are in the transform queue, with the same body and attributes
    assert result.exit_code == 0, result.output + result.stderr
    assert "moved 3 message(s) from busline-TransformDeadLetterQueue to busline-TransformQueue" in result.stdout
    assert "moved 3 message(s) in total" in result.stdout
    replayed = deployment.drain(deployment.queue_url("transform"))
    assert len(replayed) == 3
    assert {json.loads(message["Body"])["detail"]["taskId"] for message in replayed} == {"task-a"}
    assert sorted(json.loads(message["Body"])["detail"]["chunk"] for message in replayed) == [0, 1, 2]
    assert all(message["MessageAttributes"] == {"origin": {"DataType": "String", "StringValue": "test"}}
               for message in replayed)
    # And task-b's two messages stay in the DLQ, visible
    assert deployment.depth(deployment.dlq_url("transform")) == 2
    left = deployment.drain(deployment.dlq_url("transform"))
    assert {json.loads(message["Body"])["detail"]["taskId"] for message in left} == {"task-b"}
    assert not a_ids & {message["MessageId"] for message in left}


def test_replay_dry_run_moves_nothing(runner, cli_app, deployment):
    # Given two load messages of task-a in the load DLQ
    deployment.dead_letter("load", "task-a", chunk=0)
    deployment.dead_letter("load", "task-a", chunk=1)

    # When replaying with --dry-run
    result = _run(runner, cli_app, deployment, "replay", "--task", "task-a", "--dry-run")

    # Then it says what would move, and nothing moved
    assert result.exit_code == 0, result.output + result.stderr
    assert "dry run: would move 2 message(s); moved 0" in result.stdout
    assert deployment.depth(deployment.dlq_url("load")) == 2
    assert deployment.depth(deployment.queue_url("load")) == 0


def test_unfiltered_replay_falls_back_when_move_tasks_are_not_implemented(runner, cli_app, deployment):
    # Given messages in all three DLQs (moto has no StartMessageMoveTask)
    deployment.dead_letter("extract", "task-a")
    deployment.dead_letter("transform", "task-a", chunk=0)
    deployment.dead_letter("load", "task-a", chunk=0)
    deployment.dead_letter("load", "task-b", chunk=0)

    # When replaying everything at a rate limit
    result = _run(runner, cli_app, deployment, "replay", "--rate", "200")

    # Then every message went back to its own source queue
    assert result.exit_code == 0, result.output + result.stderr
    assert "moved 4 message(s) in total" in result.stdout
    assert [deployment.depth(deployment.queue_url(phase)) for phase in ("extract", "transform", "load")] == [1, 1, 2]
    assert [deployment.depth(deployment.dlq_url(phase)) for phase in ("extract", "transform", "load")] == [0, 0, 0]


def test_replay_limit_and_phase(runner, cli_app, deployment):
    # Given 4 load messages and 1 transform message of the same task
    for chunk in range(4):
        deployment.dead_letter("load", "task-a", chunk=chunk)
    deployment.dead_letter("transform", "task-a", chunk=9)

    # When replaying at most 3 messages of the load phase
    result = _run(runner, cli_app, deployment, "replay", "--phase", "load", "--limit", "3")

    # Then exactly 3 moved, 1 load message and the transform message remain
    assert result.exit_code == 0, result.output + result.stderr
    assert "moved 3 message(s) in total" in result.stdout
    assert deployment.depth(deployment.queue_url("load")) == 3
    assert deployment.depth(deployment.dlq_url("load")) == 1
    assert deployment.depth(deployment.dlq_url("transform")) == 1


def test_purge_without_yes_asks_and_keeps_messages_on_no(runner, cli_app, deployment):
    # Given one message in the extract DLQ
    deployment.dead_letter("extract", "task-a")

    # When purging without --yes and answering no
    result = runner.invoke(cli_app, ["dlq", "purge", "--queue", "extract", "--endpoints",
                                     str(deployment.endpoints_file)], input="n\n")

    # Then it asked, purged nothing and exited non-zero
    assert result.exit_code == 1
    assert "Purge 1 message(s) from busline-ExtractDeadLetterQueue (1)? This cannot be undone" in result.stdout
    assert "nothing purged" in result.stderr
    assert deployment.depth(deployment.dlq_url("extract")) == 1


def test_purge_with_yes_empties_the_queue(runner, cli_app, deployment):
    # Given two messages in the load DLQ and one in the transform DLQ
    deployment.dead_letter("load", "task-a", chunk=0)
    deployment.dead_letter("load", "task-a", chunk=1)
    deployment.dead_letter("transform", "task-a", chunk=0)

    # When purging the load DLQ with --yes
    result = _run(runner, cli_app, deployment, "purge", "--queue", "load", "--yes")

    # Then only the load DLQ is empty
    assert result.exit_code == 0, result.output + result.stderr
    assert "purged busline-LoadDeadLetterQueue (2 message(s))" in result.stdout
    assert deployment.depth(deployment.dlq_url("load")) == 0
    assert deployment.depth(deployment.dlq_url("transform")) == 1


def test_unknown_queue_and_phase_are_named_in_the_error(runner, cli_app, deployment):
    # When naming a queue or a phase that does not exist
    bad_queue = _run(runner, cli_app, deployment, "show", "--queue", "nope")
    bad_phase = _run(runner, cli_app, deployment, "replay", "--phase", "publish")

    # Then the usage error names the option, the value and the known queues
    assert bad_queue.exit_code == 2
    assert "'nope'" in bad_queue.stderr and "--queue" in bad_queue.stderr
    # (the error panel wraps at 80 columns: read it as one line)
    panel = " ".join(bad_queue.stderr.replace("│", " ").split())
    assert "transform (busline-TransformDeadLetterQueue)" in panel
    assert bad_phase.exit_code == 2
    assert "'publish' is not one of extract, transform, load" in bad_phase.stderr


def test_missing_outputs_are_reported(runner, cli_app, aws_env, tmp_path):
    # Given an endpoints file without queue outputs
    endpoints_file = tmp_path / "endpoints.json"
    endpoints_file.write_text(json.dumps({"rest": "http://127.0.0.1:9", "outputs": {}}))

    # When listing DLQs
    result = runner.invoke(cli_app, ["dlq", "list", "--endpoints", str(endpoints_file)])

    # Then the error says which outputs were expected
    assert result.exit_code == 1
    assert "ExtractDeadLetterQueueUrl" in result.stderr


def test_show_json_lists_every_field(runner, cli_app, deployment):
    # Given one extract message (TaskSubmitted has no phase or chunk) of a task that failed in extract
    deployment.failed_task("task-x", TaskAbandoned(Phase.EXTRACT, "source unreadable"))
    message_id = deployment.dead_letter("extract", "task-x")

    # When showing it as JSON
    result = _run(runner, cli_app, deployment, "show", "--queue", "extract", "--json")

    # Then the fields are all there, the phase taken from the queue
    assert result.exit_code == 0, result.output + result.stderr
    [row] = json.loads(result.stdout)
    assert {key: value for key, value in row.items() if key != "sentAt"} == {
        "queue": "busline-ExtractDeadLetterQueue", "messageId": message_id, "taskId": "task-x", "phase": "extract",
        "chunk": None, "detailType": "TaskSubmitted", "receiveCount": 1, "lastError": "phase extract: source unreadable",
    }
    assert deployment.depth(deployment.dlq_url("extract")) == 1


def test_show_task_filters_messages(runner, cli_app, deployment):
    # Given load messages of two tasks
    deployment.dead_letter("load", "task-a", chunk=0)
    deployment.dead_letter("load", "task-b", chunk=1)
    deployment.dead_letter("load", "task-b", chunk=2)

    # When showing task-b only, as JSON
    result = _run(runner, cli_app, deployment, "show", "--task", "task-b", "--json")

    # Then exactly task-b's two messages are listed and all three stay in the DLQ
    assert result.exit_code == 0, result.output + result.stderr
    assert sorted((row["taskId"], row["chunk"]) for row in json.loads(result.stdout)) == [("task-b", 1), ("task-b", 2)]
    assert deployment.depth(deployment.dlq_url("load")) == 3


class FakeMoveTaskSqs:
    """Just enough SQS for _start_move_task: ARNs, a depth, and a scripted StartMessageMoveTask answer."""

    def __init__(self, outcome):
        self.outcome = outcome
        self.move_requests = []

    def get_queue_attributes(self, QueueUrl, AttributeNames):  # noqa: N803 - boto3's names
        name = QueueUrl.rsplit("/", 1)[-1]
        return {"Attributes": {"QueueArn": f"arn:aws:sqs:us-east-1:123456789012:{name}",
                               "ApproximateNumberOfMessages": "7", "ApproximateNumberOfMessagesNotVisible": "0"}}

    def start_message_move_task(self, **request):
        self.move_requests.append(request)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return {"TaskHandle": self.outcome}


def test_unfiltered_replay_on_aws_starts_a_message_move_task():
    # Given an SQS that supports message move tasks
    pair = dlq.QueuePair("load", "https://sqs/123456789012/load", "https://sqs/123456789012/load-dlq")
    sqs = FakeMoveTaskSqs("handle-1")

    # When starting one at 5 messages/s
    started = dlq._start_move_task(sqs, pair, 5.0)

    # Then the DLQ is moved server-side to its source queue at that rate
    assert started is True
    assert sqs.move_requests == [{"SourceArn": "arn:aws:sqs:us-east-1:123456789012:load-dlq",
                                  "DestinationArn": "arn:aws:sqs:us-east-1:123456789012:load",
                                  "MaxNumberOfMessagesPerSecond": 5}]


def test_move_task_refused_or_too_slow_falls_back_to_moving_ourselves():
    # Given an endpoint that refuses move tasks, and a rate below what move tasks allow
    pair = dlq.QueuePair("load", "https://sqs/1/load", "https://sqs/1/load-dlq")
    refused = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "StartMessageMoveTask")
    refusing = FakeMoveTaskSqs(refused)
    capable = FakeMoveTaskSqs("handle-2")

    # When asked to start one
    # Then both report "not started", and the slow rate never even asks
    assert dlq._start_move_task(refusing, pair, None) is False
    assert dlq._start_move_task(capable, pair, 0.5) is False
    assert len(refusing.move_requests) == 1
    assert capable.move_requests == []


def test_throttle_spaces_calls():
    # Given a throttle of 4 per second on a fake clock
    now = [100.0]
    slept = []

    def sleep(seconds):
        slept.append(round(seconds, 3))
        now[0] += seconds

    throttle = dlq.Throttle(4, clock=lambda: now[0], sleep=sleep)

    # When waiting three times in a row
    for _ in range(3):
        throttle.wait()

    # Then the first goes at once and the next two wait a quarter second each
    assert slept == [0.25, 0.25]
