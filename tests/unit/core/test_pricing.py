"""pricing.py: the one price table, and usage -> US dollars by hand-checked arithmetic."""

from __future__ import annotations

import pytest
from busline_core.pricing import (
    LIST_PRICES,
    PRICES_CHECKED,
    PRICES_REGION,
    Usage,
    dynamodb_item_bytes,
    estimate_cost,
    glue_cost_usd,
    lambda_gb_seconds,
    read_units,
    write_units,
)


def test_the_table_holds_the_checked_list_prices() -> None:
    # Then the table says where and when its prices were checked, and holds them per unit
    assert (PRICES_REGION, PRICES_CHECKED) == ("us-east-1", "late November 2026")
    assert LIST_PRICES.eventbridge_event * 1e6 == pytest.approx(1.00)
    assert LIST_PRICES.sqs_request * 1e6 == pytest.approx(0.40)
    assert LIST_PRICES.lambda_request * 1e6 == pytest.approx(0.20)
    assert LIST_PRICES.lambda_gb_second_x86_64 == 0.0000166667
    assert LIST_PRICES.lambda_gb_second_arm64 == 0.0000133334
    assert LIST_PRICES.dynamodb_write_unit * 1e6 == pytest.approx(0.625)
    assert LIST_PRICES.dynamodb_read_unit * 1e6 == pytest.approx(0.125)
    assert LIST_PRICES.websocket_message * 1e6 == pytest.approx(1.00)
    assert LIST_PRICES.websocket_connection_minute * 1e6 == pytest.approx(0.25)
    assert LIST_PRICES.s3_put * 1e3 == pytest.approx(0.005)
    assert LIST_PRICES.s3_get * 1e3 == pytest.approx(0.0004)
    assert LIST_PRICES.stepfunctions_transition * 1e3 == pytest.approx(0.025)
    assert (LIST_PRICES.glue_dpu_hour, LIST_PRICES.glue_minimum_seconds) == (0.44, 60.0)


def test_a_task_priced_per_service_from_its_counted_calls() -> None:
    # Given the calls of a task as the bench counts them, and its Lambda usage
    usage = Usage(
        calls={
            "sqs:ReceiveMessage": 100,
            "sqs:DeleteMessageBatch": 20,
            "events:PutEvents": 10,
            "dynamodb:UpdateItem": 80,
            "dynamodb:PutItem": 20,
            "dynamodb:GetItem": 30,
            "dynamodb:Query": 10,
            "s3:PUT object": 40,
            "s3:GET object": 50,
            "s3:HEAD object": 10,
        },
        lambda_invocations=1000,
        lambda_gb_seconds=100.0,
        websocket_messages=40,
        websocket_connection_minutes=2,
    )
    # When it is priced
    estimate = estimate_cost(usage)
    # Then each service costs its units times its list price
    assert estimate.by_service() == pytest.approx(
        {
            "lambda": 1000 * 0.20e-6 + 100 * 0.0000166667,  # 0.0002 + 0.00166667
            "sqs": 120 * 0.40e-6,  # 0.000048
            "eventbridge": 10 * 1.00e-6,  # one event per call when entries are not counted
            "dynamodb": 100 * 0.625e-6 + 40 * 0.125e-6,  # 0.0000625 + 0.000005
            "s3": 40 * 0.005e-3 + 60 * 0.0004e-3,  # 0.0002 + 0.000024
            "apigateway-websocket": 40 * 1.00e-6 + 2 * 0.25e-6,  # 0.00004 + 0.0000005
        },
        rel=1e-12,
    )
    assert estimate.total_usd == pytest.approx(0.00225667, rel=1e-9)
    assert estimate.unpriced == {} and estimate.free == {}


def test_what_a_bill_counts_overrides_one_unit_per_call() -> None:
    # Given 3 PutEvents calls carrying 25 events, 30 messages rules delivered into queues, and
    # DynamoDB writes of a 2.5 KB item also written to one index
    usage = Usage(
        calls={"events:PutEvents": 3, "sqs:ReceiveMessage": 30, "dynamodb:UpdateItem": 10},
        eventbridge_events=25,
        sqs_deliveries=30,
        dynamodb_write_units=10 * write_units(2560, indexes=1),
        dynamodb_read_units=0,
    )
    # When it is priced
    by_service = estimate_cost(usage).by_service()
    # Then the bill's own units are used
    assert by_service["eventbridge"] == pytest.approx(25e-6)
    assert by_service["sqs"] == pytest.approx(60 * 0.40e-6)
    assert by_service["dynamodb"] == pytest.approx(60 * 0.625e-6)  # 10 writes x 3 KB x (table + index)


def test_unknown_and_free_operations_are_reported_not_guessed() -> None:
    # Given operations the table has no price for, and ones AWS does not bill
    usage = Usage(
        calls={
            "sns:Publish": 1,
            "ssm:GetParameter": 4,
            "dynamodb:BatchWriteItem": 2,
            "dynamodbstreams:GetRecords": 50,
            "s3:DELETE object": 3,
        }
    )
    # When it is priced
    estimate = estimate_cost(usage)
    # Then nothing is charged for them, and each is listed with its count
    assert estimate.total_usd == 0 and estimate.lines == ()
    assert estimate.unpriced == {"sns:Publish": 1, "ssm:GetParameter": 4, "dynamodb:BatchWriteItem": 2}
    assert estimate.free == {"dynamodbstreams:GetRecords": 50, "s3:DELETE object": 3}


def test_arm64_gb_seconds_and_step_functions_transitions() -> None:
    usage = Usage(lambda_gb_seconds=1000.0, lambda_architecture="arm64", stepfunctions_transitions=4000)
    assert estimate_cost(usage).by_service() == pytest.approx(
        {"lambda": 1000 * 0.0000133334, "stepfunctions": 4000 * 0.025e-3}
    )


def test_per_million_rows_scales_every_service_and_the_total() -> None:
    # Given a task of 250,000 rows whose Lambda cost 0.0002 and SQS 0.00004
    estimate = estimate_cost(Usage(calls={"sqs:SendMessage": 100}, lambda_invocations=1000))
    # Then per 1M rows each is four times as much
    assert estimate.per_million_rows(250_000) == pytest.approx(
        {"lambda": 0.0008, "sqs": 0.00016, "total": 0.00096}
    )
    assert estimate.per_million_rows(0) == {}


def test_lambda_gb_seconds_and_glue_minimum() -> None:
    assert lambda_gb_seconds(1500, 1024) == 1.5
    assert lambda_gb_seconds(1000, 512) == 0.5
    # 10 DPUs for 30 s are billed as the 60 s minimum; for 90 s as 90 s
    assert glue_cost_usd(10, 30) == pytest.approx(10 * 60 / 3600 * 0.44)
    assert glue_cost_usd(10, 90) == pytest.approx(0.11)


def test_dynamodb_item_size_and_units() -> None:
    # Given an item in DynamoDB's low-level form
    item = {
        "taskId": {"S": "abc"},  # 6 + 3
        "rows": {"N": "336776"},  # 4 + (6 digits: 3) + 1
        "ratio": {"N": "0.0100"},  # 5 + (1 significant digit: 1) + 1
        "ok": {"BOOL": True},  # 2 + 1
        "error": {"NULL": True},  # 5 + 1
        "tags": {"SS": ["a", "bc"]},  # 4 + 3
        "counts": {"M": {"read": {"N": "12"}}},  # 6 + 3 + (1 + 4 + 2)
        "list": {"L": [{"S": "xy"}, {"B": "AAE="}]},  # 4 + 3 + (1 + 2) + (1 + 2)
    }
    assert dynamodb_item_bytes(item) == 9 + 8 + 7 + 3 + 6 + 7 + 16 + 13
    # Then units round up per KB (writes) or 4 KB (reads), and every whole-item index bills its write
    assert write_units(1) == 1 and write_units(1024) == 1 and write_units(1025) == 2
    assert write_units(2500, indexes=1) == 6
    assert read_units(4096) == 1.0 and read_units(4097) == 2.0 and read_units(100, consistent=False) == 0.5
    with pytest.raises(ValueError, match="unknown DynamoDB attribute type"):
        dynamodb_item_bytes({"x": {"Q": 1}})
