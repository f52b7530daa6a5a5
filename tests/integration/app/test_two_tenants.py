"""Two tenants of one stack, alice and bob, and callers without a valid token.

Every answer about another tenant's resource must read exactly like the answer about a missing one,
and a refused token must never reach a function.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from busline.auth import client_credentials
from busline.localcloud.oauth2 import sign_as_the_pool
from busline.localcloud.testing import RunningCloud, websocket_url

pytestmark = pytest.mark.integration

# the suite's fixtures (tests/integration/app/conftest.py): Api clients signed in as alice and bob
Api = Any
ProgressRecording = Any


def api_invocations(cloud: RunningCloud) -> int:
    """How often the API function ran: one START line per invocation in its log."""
    log = cloud.data_dir / "logs" / "ApiFunction.log"
    return log.read_text(errors="replace").count("START RequestId:") if log.exists() else 0


def expired_copy(token: str) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    return sign_as_the_pool({**claims, "iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600})


def with_claims(token: str, **changes: Any) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    return sign_as_the_pool({**claims, **changes})


def tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["sub"] = "someone-else"
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    return f"{header}.{forged}.{signature}"


def test_bob_cannot_see_or_read_alices_task(flights_run: ProgressRecording, api: Api, bob: Api) -> None:
    # Given alice's finished flights task, and a task id nobody has
    task_id = flights_run.task_id
    missing = str(uuid.uuid4())
    # When bob asks for her task and her rejects, and for the missing task
    theirs = bob.call("GET", f"/tasks/{task_id}")
    theirs_rejects = bob.call("GET", f"/tasks/{task_id}/rejects?limit=5")
    nobodys = bob.call("GET", f"/tasks/{missing}")
    # Then both of hers answer exactly like a task that does not exist
    assert (theirs.status, theirs.body) == (404, {"message": f"task {task_id} not found"})
    assert (theirs_rejects.status, theirs_rejects.body) == (404, {"message": f"task {task_id} not found"})
    assert (nobodys.status, nobodys.body) == (404, {"message": f"task {missing} not found"})
    # And bob, who submitted nothing, lists no task at all while alice lists hers
    assert bob.call("GET", "/tasks?limit=100").body == {"items": [], "nextToken": None}
    assert task_id in {task["taskId"] for task in api.all_tasks()}


def test_bobs_websocket_subscribe_to_alices_task_is_refused_like_a_missing_one(
    cloud: RunningCloud, flights_run: ProgressRecording, bob: Api
) -> None:
    # Given bob connected with his own token
    assert bob.token is not None
    missing = str(uuid.uuid4())
    with connect(websocket_url(cloud.endpoints, bob.token), open_timeout=30) as socket:
        # When he subscribes to alice's task, then to a task that does not exist
        socket.send(json.dumps({"action": "subscribe", "taskId": flights_run.task_id}))
        hers = json.loads(socket.recv(timeout=30))
        socket.send(json.dumps({"action": "subscribe", "taskId": missing}))
        nobodys = json.loads(socket.recv(timeout=30))
    # Then both answers are the same message, and no snapshot of hers reached him
    assert hers == {"error": f"task {flights_run.task_id} not found"}
    assert nobodys == {"error": f"task {missing} not found"}


def test_a_spec_reading_alices_upload_or_writing_outside_bobs_schema_is_400(
    cloud: RunningCloud, api: Api, bob: Api
) -> None:
    # Given alice's upload prefix (her sub) and bob's specs pointing at it, and at a schema-qualified table
    bucket = cloud.endpoints["outputs"]["DataBucketName"]
    alice_sub = jwt.decode(api.token or "", options={"verify_signature": False})["sub"]
    columns = [{"name": "id", "type": "int", "required": True}]
    reading_hers = {
        "source": {"uri": f"s3://{bucket}/uploads/{alice_sub}/orders.csv", "format": "csv"},
        "columns": columns,
        "target": {"table": "orders", "key": ["id"]},
    }
    writing_elsewhere = {
        "source": {"uri": f"s3://{bucket}/shared/nycflights13/airlines.csv", "format": "csv"},
        "columns": columns,
        "target": {"table": "public.orders", "key": ["id"]},
    }
    tasks_before = len(bob.all_tasks())
    # When bob submits them
    read = bob.call("POST", "/tasks", reading_hers)
    written = bob.call("POST", "/tasks", writing_elsewhere)
    # Then each is a 400 naming the field, and nothing was recorded for bob
    assert read.status == 400
    assert [error["field"] for error in read.body["errors"]] == ["source.uri"]
    assert written.status == 400
    assert [error["field"] for error in written.body["errors"]] == ["target.table"]
    assert len(bob.all_tasks()) == tasks_before


@pytest.mark.parametrize("kind", ["none", "garbage", "tampered", "expired", "id token", "other pool"])
def test_a_missing_or_bad_token_is_401_and_never_reaches_the_function(
    cloud: RunningCloud, api: Api, kind: str
) -> None:
    # Given a token that is missing or wrong in one way
    assert api.token is not None
    from busline.localcloud.testing import user_tokens

    bad = {
        "none": "",
        "garbage": "not-a-jwt",
        "tampered": tampered(api.token),
        "expired": expired_copy(api.token),
        "id token": user_tokens(cloud.endpoints, "alice").id_token,
        "other pool": with_claims(api.token, iss="https://cognito-idp.us-east-1.amazonaws.com/us-east-1_NotThisPool"),
    }[kind]
    calls_before = api_invocations(cloud)
    # When it is sent to every route: list, read, submit, and the OpenAPI page
    answers = [
        api.call("GET", "/tasks", authorization=bad),
        api.call("GET", f"/tasks/{uuid.uuid4()}", authorization=bad),
        api.call("POST", "/tasks", {"pipeline": "flights", "params": {}}, authorization=bad),
        api.call("GET", "/swagger", authorization=bad),
    ]
    # Then each is a 401 with API Gateway's JSON body, and the API function never ran
    assert [(answer.status, answer.body) for answer in answers] == [(401, {"message": "Unauthorized"})] * 4
    assert api_invocations(cloud) == calls_before
    # And the same token cannot open the WebSocket
    url = websocket_url(cloud.endpoints, bad) if bad else cloud.endpoints["websocket"]
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=30).close()
    assert refused.value.response.status_code == 401


def test_the_openapi_page_is_served_to_a_signed_in_caller(api: Api) -> None:
    # Given alice's token / When she asks for the OpenAPI page / Then she gets it
    response = api.call("GET", "/swagger?format=json")
    assert response.status == 200
    assert response.body["info"]["title"] == "Busline API"


def test_a_machine_client_submits_with_client_credentials_and_owns_its_tasks(
    cloud: RunningCloud, api: Api
) -> None:
    # Given the stack's machine client and its secret (client-credentials grant, scope busline/tasks)
    machine = cloud.endpoints["auth"]["machineClient"]
    token = client_credentials(machine["tokenUrl"], machine["clientId"], machine["clientSecret"], machine["scope"])
    robot = type(api)(cloud.endpoints["rest"], token.access_token)
    # When it submits a task
    response = robot.call("POST", "/tasks", {"pipeline": "no_such_pipeline"})
    accepted = robot.call("POST", "/tasks", {"pipeline": "flights", "params": {"table": "robot_flights", "limit": 100}})
    # Then a bad request is still a 400 naming the field, a good one is accepted for the client itself
    assert response.status == 400
    assert accepted.status == 202
    task_id = accepted.body["taskId"]
    assert robot.call("GET", f"/tasks/{task_id}").body["owner"] == machine["clientId"]
    # And the task is the machine's alone: alice cannot see it
    assert api.call("GET", f"/tasks/{task_id}").status == 404
    # And a wrong secret gets no token at all
    from busline.auth import SignInError

    with pytest.raises(SignInError, match="invalid_client"):
        client_credentials(machine["tokenUrl"], machine["clientId"], "wrong-secret", machine["scope"])
