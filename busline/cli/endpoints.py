"""Find the Busline the CLI should talk to: a local cloud's endpoints.json, a deployed stack, or env vars.

Precedence: `--stack` (CloudFormation outputs) > `--endpoints`/BUSLINE_ENDPOINTS (a file) >
BUSLINE_API_URL (+ AWS_ENDPOINT_URL) > `.busline/endpoints.json` in the working directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

import boto3
import typer

from busline.auth import UserPool

DEFAULT_ENDPOINTS_FILE = Path(".busline") / "endpoints.json"
PHASES = ("extract", "transform", "load")
DEFAULT_REGION = "us-east-1"

EndpointsOption = Annotated[
    Path | None,
    typer.Option(
        "--endpoints",
        envvar="BUSLINE_ENDPOINTS",
        help="endpoints.json written by `busline local up` (default .busline/endpoints.json).",
        show_default=False,
    ),
]
StackOption = Annotated[
    str | None,
    typer.Option("--stack", help="Name of a deployed CloudFormation stack; its Outputs say where things are."),
]
RegionOption = Annotated[str | None, typer.Option("--region", help="AWS region of --stack.")]


class EndpointsError(Exception):
    """The CLI cannot tell where Busline runs, or the deployment lacks something a command needs."""


@dataclass(frozen=True)
class QueuePair:
    """A phase's work queue and the dead-letter queue its failed messages end up in."""

    phase: str
    queue_url: str
    dlq_url: str

    @property
    def queue_name(self) -> str:
        return queue_name_of(self.queue_url)

    @property
    def dlq_name(self) -> str:
        return queue_name_of(self.dlq_url)


@dataclass(frozen=True)
class Deployment:
    origin: str  # human description, used in error messages ("endpoints file X", "stack S")
    rest_url: str | None
    websocket_url: str | None
    aws_endpoint: str | None  # None = the real AWS endpoints
    region: str
    outputs: dict[str, str] = field(default_factory=dict)
    user_pool: UserPool | None = None  # where to sign in; None: the deployment has no user pool
    demo_user: tuple[str, str] | None = None  # the local cloud's demo user (username, password)
    stack: str | None = None  # a deployed stack's name (its log groups, for `busline logs`)
    logs_dir: Path | None = None  # a local cloud's function log files (beside its endpoints.json)

    @property
    def is_local(self) -> bool:
        return self.aws_endpoint is not None and _is_loopback(self.aws_endpoint)

    def require_rest_url(self) -> str:
        if not self.rest_url:
            raise EndpointsError(f"{self.origin} does not say where the REST API is (no 'rest' / RestApiUrl)")
        return self.rest_url

    def _boto_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"region_name": self.region}
        if self.aws_endpoint:
            kwargs["endpoint_url"] = self.aws_endpoint
        if self.is_local:
            # moto accepts any key; fixed dummies also spare a credential-chain lookup (which may probe IMDS).
            kwargs["aws_access_key_id"] = "testing"
            kwargs["aws_secret_access_key"] = "testing"
        return kwargs

    def client(self, service: str) -> Any:
        return boto3.client(service, **self._boto_kwargs())  # type: ignore[call-overload]

    def resource(self, service: str) -> Any:
        return boto3.resource(service, **self._boto_kwargs())  # type: ignore[call-overload]

    def queue_pairs(self) -> list[QueuePair]:
        pairs = []
        for phase in PHASES:
            title = phase.capitalize()
            queue_url = self.outputs.get(f"{title}QueueUrl")
            dlq_url = self.outputs.get(f"{title}DeadLetterQueueUrl")
            if queue_url and dlq_url:
                pairs.append(QueuePair(phase=phase, queue_url=queue_url, dlq_url=dlq_url))
        if not pairs:
            raise EndpointsError(
                f"{self.origin} lists no dead-letter queues: expected outputs such as "
                "ExtractQueueUrl + ExtractDeadLetterQueueUrl (pass --stack NAME or --endpoints FILE)"
            )
        return pairs

    def tasks_table_name(self) -> str | None:
        return self.outputs.get("TasksTableName")


def queue_name_of(queue_url: str) -> str:
    return queue_url.rstrip("/").rsplit("/", 1)[-1]


def _is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return host in {"127.0.0.1", "localhost", "::1"} or host.startswith("127.")


def resolve(
    *,
    endpoints_file: Path | None = None,
    stack: str | None = None,
    region: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Deployment:
    environment = os.environ if env is None else env
    if stack:
        return from_stack(stack, region or _env_region(environment), environment)
    if endpoints_file is not None:
        return from_endpoints_file(endpoints_file)
    api_url = environment.get("BUSLINE_API_URL")
    if api_url:
        return Deployment(
            origin="BUSLINE_API_URL",
            rest_url=api_url,
            websocket_url=environment.get("BUSLINE_WEBSOCKET_URL"),
            aws_endpoint=environment.get("AWS_ENDPOINT_URL") or None,
            region=region or _env_region(environment),
        )
    if DEFAULT_ENDPOINTS_FILE.exists():
        return from_endpoints_file(DEFAULT_ENDPOINTS_FILE)
    raise EndpointsError(
        "cannot tell where Busline runs: start it with `busline local up` (writes .busline/endpoints.json), "
        "or pass --endpoints FILE or --stack NAME, or set BUSLINE_API_URL"
    )


def from_endpoints_file(path: Path) -> Deployment:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise EndpointsError(f"endpoints file {path} does not exist (is `busline local up` running?)") from None
    except json.JSONDecodeError as error:
        raise EndpointsError(f"endpoints file {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise EndpointsError(f"endpoints file {path} must hold a JSON object")
    outputs = data.get("outputs") or {}
    if not isinstance(outputs, dict):
        raise EndpointsError(f"endpoints file {path}: 'outputs' must be an object")
    auth = data.get("auth") or {}
    demo = auth.get("demoUser") or {}
    return Deployment(
        origin=f"endpoints file {path}",
        rest_url=data.get("rest") or outputs.get("RestApiUrl"),
        websocket_url=data.get("websocket") or outputs.get("WebSocketUrl"),
        aws_endpoint=data.get("aws") or None,
        region=data.get("region") or DEFAULT_REGION,
        outputs={str(key): str(value) for key, value in outputs.items()},
        user_pool=UserPool.from_endpoints(data) if auth.get("userPoolId") else None,
        demo_user=(str(demo["username"]), str(demo["password"])) if demo.get("username") else None,
        logs_dir=path.parent / "logs",
    )


def from_stack(stack: str, region: str, env: Mapping[str, str]) -> Deployment:
    from botocore.exceptions import BotoCoreError, ClientError

    aws_endpoint = env.get("AWS_ENDPOINT_URL") or None
    probe = Deployment(origin=f"stack {stack}", rest_url=None, websocket_url=None,
                       aws_endpoint=aws_endpoint, region=region)
    try:
        described = probe.client("cloudformation").describe_stacks(StackName=stack)
    except ClientError as error:
        raise EndpointsError(f"stack {stack} in {region}: {error.response['Error'].get('Message', error)}") from None
    except BotoCoreError as error:
        raise EndpointsError(f"stack {stack} in {region}: {error}") from None
    outputs = {
        output["OutputKey"]: output["OutputValue"] for output in described["Stacks"][0].get("Outputs", [])
    }
    pool = None
    if outputs.get("UserPoolId") and outputs.get("UserPoolClientId"):
        pool = UserPool(outputs["UserPoolId"], outputs["UserPoolClientId"], region, aws_endpoint)
    return Deployment(
        origin=f"stack {stack}",
        rest_url=outputs.get("RestApiUrl"),
        websocket_url=outputs.get("WebSocketUrl"),
        aws_endpoint=aws_endpoint,
        region=region,
        outputs=outputs,
        user_pool=pool,
        stack=stack,
    )


def _env_region(env: Mapping[str, str]) -> str:
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
