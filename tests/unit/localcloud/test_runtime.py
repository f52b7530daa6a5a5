"""FunctionRuntime: warm spawn workers with Lambda's invocation semantics."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from busline.localcloud.chaos import ChaosConfig
from busline.localcloud.model import CloudModel, Endpoints, FunctionSpec, LocalCloudError, SqsMapping
from busline.localcloud.runtime import FunctionRuntime

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "functions"


def _function(logical_id: str, handler: str, **overrides: object) -> FunctionSpec:
    values: dict[str, object] = {
        "logical_id": logical_id,
        "name": f"stack-{logical_id}",
        "arn": f"arn:aws:lambda:us-east-1:123456789012:function:stack-{logical_id}",
        "handler": handler,
        "code_dir": FUNCTIONS_DIR,
        "layer_dirs": [],
        "environment": {"GREETING": "hello"},
        "timeout_s": 3.0,
        "memory_mb": 256,
    }
    values.update(overrides)
    return FunctionSpec(**values)  # type: ignore[arg-type]


def _model(*functions: FunctionSpec) -> CloudModel:
    return CloudModel(
        region="us-east-1",
        account_id="123456789012",
        endpoints=Endpoints.for_base_port("127.0.0.1", 39000),
        functions={spec.logical_id: spec for spec in functions},
    )


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[FunctionRuntime]:
    model = _model(
        _function("EchoFunction", "handlers.echo"),
        _function("SleepyFunction", "handlers.sleepy", timeout_s=1.0),
        _function("BoomFunction", "handlers.boom"),
        _function("BrokenFunction", "broken_import.handler"),
        _function("NarrowFunction", "handlers.interval", reserved_concurrency=1,
                  environment={"RECORD_FILE": str(tmp_path / "narrow.jsonl")}),
        _function("CutOffFunction", "handlers.sleep_then_record", timeout_s=1.0,
                  environment={"RECORD_FILE": str(tmp_path / "cut-off.jsonl")}),
        _function("PowertoolsFunction", "powertools_app.handler"),
    )
    rt = FunctionRuntime(model, tmp_path)
    yield rt
    rt.close()


def test_return_value_and_module_state_survive_between_invocations(runtime: FunctionRuntime) -> None:
    # Given a warm function
    # When it is invoked twice in a row
    first = runtime.invoke("EchoFunction", {"n": 1}, trigger="test")
    second = runtime.invoke("EchoFunction", {"n": 2}, trigger="test")

    # Then both return the handler's value, from the same worker whose module counter kept counting
    assert first.ok and second.ok
    assert first.payload["event"] == {"n": 1}
    assert second.payload["event"] == {"n": 2}
    assert (first.payload["invocations"], second.payload["invocations"]) == (1, 2)
    assert first.payload["pid"] == second.payload["pid"]


def test_context_environment_and_working_directory(runtime: FunctionRuntime) -> None:
    # Given a variable only the parent has
    os.environ["BUSLINE_TEST_PARENT_ONLY"] = "leaked"
    try:
        # When the function runs
        result = runtime.invoke("EchoFunction", {}, trigger="test")
    finally:
        del os.environ["BUSLINE_TEST_PARENT_ONLY"]

    # Then the context has Lambda's fields, the environment is the function's, cwd is the code folder
    context = result.payload["context"]
    assert len(context["aws_request_id"]) == 36
    assert context["function_name"] == "stack-EchoFunction"
    assert context["function_version"] == "$LATEST"
    assert context["memory_limit_in_mb"] == 256
    assert context["invoked_function_arn"].endswith(":function:stack-EchoFunction")
    assert context["log_group_name"] == "/aws/lambda/stack-EchoFunction"
    assert "[$LATEST]" in context["log_stream_name"]
    assert 0 < result.payload["remaining_after"] < result.payload["remaining_before"] <= 3000
    assert result.payload["greeting"] == "hello"
    assert result.payload["parent_only"] is None
    assert result.payload["cwd"] == str(FUNCTIONS_DIR)


def test_the_function_sees_the_local_clouds_aws_config_not_the_developers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a developer whose ~/.aws holds a profile of their own, and S3 settings that would reach a function
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "config").write_text("[profile mine]\nregion = eu-west-1\ns3 =\n    addressing_style = path\n")
    (home / ".aws" / "credentials").write_text("[mine]\naws_access_key_id = AKIAMINE\naws_secret_access_key = s\n")
    monkeypatch.setenv("HOME", str(home))
    rt = FunctionRuntime(_model(_function("AwsConfigFunction", "handlers.aws_config")), tmp_path / "cloud")
    try:
        # When the function asks botocore what its shared config says
        result = rt.invoke("AwsConfigFunction", {}, trigger="test")
    finally:
        rt.close()

    # Then it sees only the local cloud's: no profile of the developer's, S3 uploads not hashed (as over https)
    assert result.ok, result.error
    assert result.payload == {"profiles": ["default"], "s3": {"payload_signing_enabled": False}}


def test_request_ids_differ_per_invocation(runtime: FunctionRuntime) -> None:
    ids = {runtime.invoke("EchoFunction", {}, trigger="test").payload["context"]["aws_request_id"]
           for _ in range(3)}
    assert len(ids) == 3


def test_timeout_kills_the_worker_and_the_next_invocation_gets_a_fresh_one(
    runtime: FunctionRuntime, tmp_path: Path
) -> None:
    # Given a function with a 1 s Timeout that records each invocation it finishes, warm
    finished = tmp_path / "cut-off.jsonl"
    warm = runtime.invoke("CutOffFunction", {"sleep": 0}, trigger="test")
    assert warm.ok
    assert len(finished.read_text().splitlines()) == 1

    # When an invocation would sleep 10 s, past the Timeout
    late = runtime.invoke("CutOffFunction", {"sleep": 10}, trigger="test")

    # Then it returns before the handler finished (no second record), with Lambda's message,
    # and the worker process is gone, so the handler never finishes later either
    assert len(finished.read_text().splitlines()) == 1
    assert (late.ok, late.timed_out, late.killed) == (False, True, False)
    assert late.error == "Task timed out after 1.00 seconds"
    assert not psutil.pid_exists(warm.payload["pid"]) or psutil.Process(warm.payload["pid"]).status() == "zombie"

    # And the next invocation works in a new worker
    after = runtime.invoke("CutOffFunction", {"sleep": 0}, trigger="test")
    assert after.ok
    assert after.payload["pid"] != warm.payload["pid"]
    assert len(finished.read_text().splitlines()) == 2


def test_handler_exception_is_reported_with_its_type_and_logged(runtime: FunctionRuntime, tmp_path: Path) -> None:
    # When the handler raises
    result = runtime.invoke("BoomFunction", {"value": 42}, trigger="test")

    # Then the result carries the exception type and message, and the log has the traceback and output
    assert (result.ok, result.timed_out, result.killed) == (False, False, False)
    assert result.error_type == "ValueError"
    assert result.error == "bad value 42"
    assert result.payload["errorType"] == "ValueError"
    log = (tmp_path / "logs" / "BoomFunction.log").read_text()
    assert "about to fail" in log
    assert "Traceback (most recent call last)" in log
    assert log.count("START RequestId:") == 1

    # And the worker stays usable after a handled exception (Lambda keeps the environment)
    assert runtime.invoke("BoomFunction", {"value": 1}, trigger="test").error == "bad value 1"


def test_import_error_is_reported_as_lambda_does(runtime: FunctionRuntime) -> None:
    result = runtime.invoke("BrokenFunction", {}, trigger="test")
    assert result.ok is False
    assert result.error_type == "Runtime.ImportModuleError"
    assert "a_module_that_does_not_exist" in (result.error or "")


def test_unknown_function_names_it(runtime: FunctionRuntime) -> None:
    with pytest.raises(LocalCloudError, match="'Nope'"):
        runtime.invoke("Nope", {}, trigger="test")


def test_reserved_concurrency_one_serialises_invocations(runtime: FunctionRuntime, tmp_path: Path) -> None:
    # Given a function capped at one concurrent execution that records when each invocation ran, warm
    runtime.invoke("NarrowFunction", {"sleep": 0}, trigger="test")
    results = []

    # When three callers invoke it at once
    def call() -> None:
        results.append(runtime.invoke("NarrowFunction", {"sleep": 0.3}, trigger="test"))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then all four ran one after the other (none started before the previous one ended) in the single worker
    spans = sorted((entry["start"], entry["end"]) for entry in map(json.loads, (tmp_path / "narrow.jsonl").read_text().splitlines()))
    assert len(spans) == 4
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))
    assert len({result.payload["pid"] for result in results}) == 1
    assert len(runtime.worker_pids()) == 1


def test_concurrent_invocations_grow_the_pool(runtime: FunctionRuntime) -> None:
    # When three invocations of an uncapped (default 4) function overlap
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        runtime.invoke("SleepyFunction", {"sleep": 0.5}, trigger="test"))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then each ran in its own worker
    assert [result.ok for result in results] == [True, True, True]
    assert len({result.payload["pid"] for result in results}) == 3


def test_close_leaves_no_worker_process_alive(tmp_path: Path) -> None:
    # Given a runtime with warm workers of two functions
    rt = FunctionRuntime(_model(_function("EchoFunction", "handlers.echo"),
                                _function("SleepyFunction", "handlers.sleepy")), tmp_path)
    rt.invoke("EchoFunction", {}, trigger="test")
    rt.invoke("SleepyFunction", {"sleep": 0}, trigger="test")
    pids = rt.worker_pids()
    assert len(pids) == 2

    # When it closes
    rt.close()

    # Then no worker process is left
    alive = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert alive == []
    assert [child.pid for child in psutil.Process().children(recursive=True) if child.pid in pids] == []


def test_console_line_per_invocation(runtime: FunctionRuntime, capsys: pytest.CaptureFixture[str]) -> None:
    # When a function is invoked cold, then warm, and another one fails
    runtime.invoke("EchoFunction", {"Records": [{}, {}, {}]}, trigger="sqs:TransformQueue")
    runtime.invoke("EchoFunction", {"Records": [{}]}, trigger="sqs:TransformQueue")
    runtime.invoke("BoomFunction", {"value": 1}, trigger="api:GET /x")

    # Then each invocation printed exactly one line: function, trigger, duration, outcome
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("invoke ")]
    assert len(lines) == 3
    assert re.fullmatch(r"invoke EchoFunction sqs:TransformQueue \d+ ms ok \(3 records\) \[cold start \d+ ms\]",
                        lines[0])
    assert re.fullmatch(r"invoke EchoFunction sqs:TransformQueue \d+ ms ok \(1 record\)", lines[1])
    assert re.fullmatch(r"invoke BoomFunction api:GET /x \d+ ms ERROR ValueError: bad value 1 \[cold start \d+ ms\]",
                        lines[2])


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("fail", {"timed_out": False, "killed": False}),
     ("timeout", {"timed_out": True, "killed": False}),
     ("kill", {"timed_out": False, "killed": True})],
)
def test_each_chaos_kind_is_injected_counted_and_written(tmp_path: Path, kind: str,
                                                         expected: dict[str, bool]) -> None:
    # Given chaos that always injects one kind
    chaos = ChaosConfig.parse(f"{kind}=1", seed=7)
    rt = FunctionRuntime(_model(_function("SleepyFunction", "handlers.sleepy", timeout_s=1.0)), tmp_path, chaos)
    try:
        # When the function is invoked twice
        results = [rt.invoke("SleepyFunction", {"sleep": 0}, trigger="test") for _ in range(2)]
    finally:
        rt.close()

    # Then both invocations failed the injected way, and both injections were counted on disk
    for result in results:
        assert result.ok is False
        assert {"timed_out": result.timed_out, "killed": result.killed} == expected
    counts = json.loads((tmp_path / "chaos.json").read_text())
    assert counts == {"duplicate": 0, "fail": 0, "timeout": 0, "kill": 0, kind: 2}


def test_chaos_can_be_skipped_per_invocation(tmp_path: Path) -> None:
    chaos = ChaosConfig.parse("fail=1", seed=1)
    rt = FunctionRuntime(_model(_function("SleepyFunction", "handlers.sleepy")), tmp_path, chaos)
    try:
        result = rt.invoke("SleepyFunction", {"sleep": 0}, trigger="test", allow_chaos=False)
    finally:
        rt.close()
    assert result.ok is True
    assert chaos.stats()["fail"] == 0


def test_worker_outlives_the_thread_that_first_invoked_it(runtime: FunctionRuntime) -> None:
    # Given a worker started by an invocation from a short-lived thread (as event sources do)
    results = []
    thread = threading.Thread(target=lambda: results.append(runtime.invoke("EchoFunction", {}, trigger="test")))
    thread.start()
    thread.join()
    # A worker tied to its starting thread would get its kill signal as that OS thread exits, which
    # is done once the kernel has removed the thread's task entry.
    assert thread.native_id is not None
    task_entry = Path(f"/proc/self/task/{thread.native_id}")
    deadline = time.monotonic() + 5
    while task_entry.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not task_entry.exists()

    # When the function is invoked again from another thread
    again = runtime.invoke("EchoFunction", {}, trigger="test")

    # Then the same warm worker answers (it was not killed along with the first thread)
    assert again.ok
    assert again.payload["pid"] == results[0].payload["pid"]
    assert again.payload["invocations"] == 2


def test_powertools_logger_and_batch_processor_work_unchanged(runtime: FunctionRuntime, tmp_path: Path) -> None:
    # Given an SQS event with one good and one bad record
    def record(message_id: str, body: str) -> dict[str, object]:
        return {"messageId": message_id, "receiptHandle": "rh", "body": body, "attributes": {},
                "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"}

    # When a Powertools handler (Logger.inject_lambda_context + BatchProcessor) processes it
    result = runtime.invoke("PowertoolsFunction", {"Records": [record("m1", "ok"), record("m2", "fail")]},
                            trigger="test")

    # Then the partial failure comes back and the structured log line carries the Lambda context
    assert result.ok
    assert result.payload == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    log_lines = [json.loads(line) for line in (tmp_path / "logs" / "PowertoolsFunction.log").read_text().splitlines()
                 if line.startswith("{")]
    processed = [line for line in log_lines if line.get("message") == "processed"]
    assert len(processed) == 1
    assert processed[0]["function_name"] == "stack-PowertoolsFunction"
    assert processed[0]["function_memory_size"] == 256
    assert len(processed[0]["function_request_id"]) == 36


def test_fail_chaos_fails_the_handlers_next_aws_call_or_else_its_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given chaos failing every invocation, a handler that makes one AWS call and one that makes none
    chaos = ChaosConfig.parse("fail=1", seed=5)
    record_file = tmp_path / "effects.jsonl"
    model = _model(
        _function("EffectFunction", "handlers.effect_then_return", environment={"RECORD_FILE": str(record_file)}),
        _function("CallingFunction", "handlers.one_aws_call"),
    )
    rt = FunctionRuntime(model, tmp_path, chaos)
    try:
        # When each is invoked 4 times
        calling = [rt.invoke("CallingFunction", {}, trigger="test") for _ in range(4)]
        silent = [rt.invoke("EffectFunction", {}, trigger="test") for _ in range(4)]
    finally:
        rt.close()

    # Then the calling handler saw its call fail as a dependency's 503 (and handled it: the invocation
    # succeeded), while the silent one ran to its effect and lost its answer
    assert [(result.ok, result.payload) for result in calling] == [
        (True, {"outcome": "ServiceUnavailable", "message": "chaos: sqs ListQueues failed"})
    ] * 4
    assert [(result.ok, result.error) for result in silent] == [
        (False, "chaos: the handler made no AWS call to fail; its answer was lost instead")
    ] * 4
    assert len(record_file.read_text().splitlines()) == 4
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("invoke ")]
    assert sum("[chaos fail]" in line for line in lines) == 8
    assert chaos.stats()["fail"] == 8


def test_workers_of_queue_fed_functions_yield_the_cpu_to_the_others(tmp_path: Path) -> None:
    # Given a function an SQS mapping feeds and one it does not
    model = _model(_function("EchoFunction", "handlers.echo"), _function("SleepyFunction", "handlers.sleepy"))
    model.sqs_mappings.append(
        SqsMapping(logical_id="SleepyQueueMapping", function="SleepyFunction", queue_url="q", queue_arn="arn")
    )
    rt = FunctionRuntime(model, tmp_path)
    try:
        # When each has a warm worker
        rt.invoke("EchoFunction", {}, trigger="test")
        rt.invoke("SleepyFunction", {"sleep": 0}, trigger="test")
        # Then the queue-fed one runs at BATCH_NICENESS (10) above this process, the other at its niceness
        niceness = sorted(psutil.Process(pid).nice() - psutil.Process().nice() for pid in rt.worker_pids())
        assert niceness == [0, 10]
    finally:
        rt.close()
