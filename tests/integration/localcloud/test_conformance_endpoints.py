"""endpoints.json, stack outputs and the static site of a running local cloud."""

from __future__ import annotations

import json

import psycopg
import pytest
from conformance_support import STAGE, TEMPLATE, Aws, http
from samtranslator.yaml_helper import yaml_parse

from busline.localcloud.testing import RunningCloud

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

REQUIRED_KEYS = {"rest", "websocket", "web", "aws", "management", "postgres", "oauth", "region", "outputs"}


def test_endpoints_json_has_every_key_on_the_ports_of_the_base(cloud: RunningCloud) -> None:
    # Given a cloud started with --port P
    base = cloud.base_port
    # When we read the endpoints.json it wrote
    endpoints = json.loads((cloud.data_dir / "endpoints.json").read_text())
    # Then every documented key is there, each service on its own port of the block P..P+5
    assert REQUIRED_KEYS - endpoints.keys() == set()
    assert endpoints["rest"] == f"http://127.0.0.1:{base}"
    assert endpoints["websocket"] == f"ws://127.0.0.1:{base + 1}"
    assert endpoints["web"] == f"http://127.0.0.1:{base + 2}"
    assert endpoints["aws"] == f"http://127.0.0.1:{base + 3}"
    assert endpoints["management"] == f"http://127.0.0.1:{base + 4}"
    assert endpoints["oauth"] == f"http://127.0.0.1:{base + 5}"
    assert isinstance(endpoints["region"], str) and endpoints["region"] != ""


def test_postgres_url_is_usable(cloud: RunningCloud) -> None:
    # Given the postgres URL the cloud published
    url = cloud.endpoints["postgres"]
    # When we connect with psycopg and ask something
    with psycopg.connect(url, connect_timeout=10) as connection:
        answer = connection.execute("select 40 + 2").fetchone()
    # Then the server answers
    assert answer == (42,)


def test_outputs_are_every_template_output_resolved_to_local_values(cloud: RunningCloud, aws: Aws) -> None:
    # Given the fixture template's Outputs
    declared = set(yaml_parse(TEMPLATE.read_text())["Outputs"])
    endpoints = cloud.endpoints
    # When we read the outputs the cloud resolved
    outputs = endpoints["outputs"]
    # Then each output is there, as a plain string (no unresolved intrinsic left)
    assert set(outputs) == declared
    assert [name for name, value in outputs.items() if not isinstance(value, str) or "${" in value] == []
    # And execute-api URLs point at the local gateways; --param reached the stage name
    assert outputs["ApiUrl"] == f"{endpoints['rest']}/Prod"
    assert outputs["ManagementApiUrl"] == f"{endpoints['management']}/{STAGE}"
    assert outputs["WebSocketStage"] == STAGE
    # And the queue is real in moto, with its VisibilityTimeout and RedrivePolicy
    work = aws.sqs.get_queue_attributes(QueueUrl=outputs["WorkQueueUrl"], AttributeNames=["All"])[
        "Attributes"
    ]
    dead = aws.sqs.get_queue_attributes(
        QueueUrl=outputs["WorkDeadLetterQueueUrl"], AttributeNames=["QueueArn"]
    )["Attributes"]
    assert work["VisibilityTimeout"] == "2"
    redrive = json.loads(work["RedrivePolicy"])
    assert (redrive["deadLetterTargetArn"], int(redrive["maxReceiveCount"])) == (dead["QueueArn"], 2)
    # And the stream table has the stream the output names
    table = aws.dynamodb.describe_table(TableName=outputs["StreamTableName"])["Table"]
    assert table["LatestStreamArn"] == outputs["StreamArn"]
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    # And the custom bus exists under the name Ref returned
    assert aws.events.describe_event_bus(Name=outputs["BusName"])["Name"] == outputs["BusName"]


def test_static_site_serves_the_page_and_config_json(cloud: RunningCloud) -> None:
    # Given the web endpoint
    web = cloud.endpoints["web"]
    # When we fetch the page and /config.json
    page = http("GET", f"{web}/")
    config = http("GET", f"{web}/config.json")
    # Then the page is the template folder's web/index.html, and the config is what a page needs of
    # endpoints.json: where the APIs are, never the database URL (this template has no user pool)
    endpoints = json.loads((cloud.data_dir / "endpoints.json").read_text())
    assert page.status == 200
    assert b"Busline local-cloud fixture" in page.body
    assert config.status == 200
    assert config.json() == {key: endpoints[key] for key in ("rest", "websocket", "region")}
