"""What the local cloud knows about a template once it is translated and provisioned.

The provisioner (the provision package) builds a CloudModel; the runtime, event sources and gateways only
read it. Every name, URL and ARN in here is already resolved to its local value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Endpoints:
    """Local URLs, decided before provisioning so environment variables can point at them."""

    host: str
    rest: str  # REST gateway, e.g. http://127.0.0.1:3000 (stage prefix optional on requests)
    websocket: str  # WebSocket gateway, e.g. ws://127.0.0.1:3001
    web: str  # static web page, e.g. http://127.0.0.1:3002
    aws: str  # moto server, e.g. http://127.0.0.1:3003
    management: str  # @connections management API, e.g. http://127.0.0.1:3004
    postgres: str  # postgresql://... the administrator's URL (the functions get a least-privileged role's)
    oauth: str = ""  # the user pool domain's OAuth2 endpoints, e.g. http://127.0.0.1:3005

    @classmethod
    def for_base_port(cls, host: str, port: int, postgres: str = "") -> Endpoints:
        return cls(
            host=host,
            rest=f"http://{host}:{port}",
            websocket=f"ws://{host}:{port + 1}",
            web=f"http://{host}:{port + 2}",
            aws=f"http://{host}:{port + 3}",
            management=f"http://{host}:{port + 4}",
            postgres=postgres,
            oauth=f"http://{host}:{port + 5}",
        )

    def as_json(self) -> dict[str, str]:
        return {
            "rest": self.rest,
            "websocket": self.websocket,
            "web": self.web,
            "aws": self.aws,
            "management": self.management,
            "postgres": self.postgres,
            "oauth": self.oauth,
        }


# What a CloudModel provisioned in-process (no gateways, no moto server) carries as its endpoints.
NO_ENDPOINTS = Endpoints(host="", rest="", websocket="", web="", aws="", management="", postgres="")


@dataclass
class FunctionSpec:
    logical_id: str
    name: str  # physical FunctionName
    arn: str
    handler: str  # "app.handler" -> module app, attribute handler
    code_dir: Path  # absolute path of the CodeUri folder
    layer_dirs: list[Path]  # absolute folders to put on sys.path, in order
    environment: dict[str, str]  # the template's Environment, resolved to local values
    timeout_s: float = 3.0
    memory_mb: int = 128
    runtime: str = "python3.11"
    reserved_concurrency: int | None = None


@dataclass
class SqsMapping:
    logical_id: str
    function: str  # FunctionSpec.logical_id
    queue_url: str
    queue_arn: str
    batch_size: int = 10
    max_batching_window_s: float = 0.0
    report_batch_item_failures: bool = False
    max_concurrency: int | None = None  # ScalingConfig.MaximumConcurrency
    enabled: bool = True


@dataclass
class StreamMapping:
    logical_id: str
    function: str
    table_name: str
    stream_arn: str
    starting_position: str = "LATEST"  # or TRIM_HORIZON
    batch_size: int = 100
    max_batching_window_s: float = 0.0
    filter_patterns: list[dict[str, Any]] = field(default_factory=list)  # parsed FilterCriteria patterns
    max_retry_attempts: int = -1  # -1: until the record expires
    bisect_on_error: bool = False
    on_failure_arn: str | None = None  # SQS queue or SNS topic ARN
    report_batch_item_failures: bool = False
    enabled: bool = True


@dataclass
class ScheduleSpec:
    logical_id: str
    function: str
    expression: str  # "rate(5 minutes)" or "cron(0 12 * * ? *)"
    input: Any = None  # the target's Input (already parsed JSON), else the scheduled event
    enabled: bool = True
    rule_arn: str = ""  # the rule's ARN, or the Scheduler schedule's
    service: str = "events"  # "events" (a rule's ScheduleExpression) or "scheduler" (EventBridge Scheduler)
    name: str = ""  # a Scheduler schedule's "group/name"
    timezone: str = "UTC"  # a Scheduler schedule's ScheduleExpressionTimezone


@dataclass
class AsyncInvokeConfig:
    """How Lambda treats a function's asynchronous invocations (what S3 and SNS deliver): the function's
    AWS::Lambda::EventInvokeConfig and its DeadLetterConfig."""

    max_retry_attempts: int = 2
    max_event_age_s: int = 21600
    on_success_arn: str | None = None  # SQS queue or SNS topic ARN
    on_failure_arn: str | None = None
    dead_letter_arn: str | None = None  # DeadLetterConfig.TargetArn: gets the event itself


@dataclass
class S3Trigger:
    """A bucket notification whose target is a function of the template (the SAM `S3` event)."""

    logical_id: str  # the bucket's
    bucket: str
    function: str  # FunctionSpec.logical_id
    event: str  # "s3:ObjectCreated:*", ...
    prefix: str = ""
    suffix: str = ""
    configuration_id: str = ""


@dataclass
class SnsTrigger:
    """An SNS subscription with protocol `lambda` (the SAM `SNS` event)."""

    logical_id: str  # the subscription's, or the topic's for an inline Subscription
    topic_arn: str
    function: str
    subscription_arn: str
    filter_policy: dict[str, Any] | None = None
    filter_policy_scope: str = "MessageAttributes"


@dataclass
class RestAuthorizer:
    """One entry of the OpenAPI body's securitySchemes (x-amazon-apigateway-authorizer)."""

    name: str
    kind: str  # "cognito_user_pools", "token" or "request"
    provider_arns: list[str] = field(default_factory=list)  # cognito_user_pools: the user pools
    function: str | None = None  # token / request: the authorizer function's logical id
    identity_sources: list[str] = field(default_factory=list)  # "method.request.header.Authorization", ...
    identity_validation: str | None = None  # token: identityValidationExpression
    ttl_s: int = 300  # authorizerResultTtlInSeconds (0: no caching)


@dataclass
class RestRoute:
    function: str  # "" for a mock integration (SAM's CORS preflight)
    method: str  # GET, POST, ..., or ANY
    path: str  # "/tasks/{id}", "/{proxy+}"
    api_logical_id: str = ""
    stage: str = "Prod"
    authorizer: RestAuthorizer | None = None
    scopes: list[str] = field(default_factory=list)  # the method's authorization scopes (Cognito)
    mock_headers: dict[str, str] | None = None  # a mock integration answers 200 with these headers
    # The API's binaryMediaTypes ("image/png", "image/*", "*/*"). None: no template said (a route built by
    # hand); the gateway then tells binary bodies from text by their bytes instead of by media type.
    binary_media_types: list[str] | None = None


@dataclass
class WsApi:
    logical_id: str
    api_id: str
    name: str
    route_selection_expression: str  # e.g. "$request.body.action"
    stage: str
    routes: dict[str, str]  # route key ("$connect", "subscribe", "$default") -> function logical id
    connect_authorizer: str | None = None  # function logical id of the $connect REQUEST authorizer
    authorizer_identity_sources: list[str] = field(default_factory=list)

    @property
    def local_path(self) -> str:
        """Where the WebSocket gateway serves this API whatever the other APIs' stages: AWS's
        wss://{api-id}.execute-api…/{stage} with the host's API id as the first path segment."""
        return f"/{self.api_id}/{self.stage}"


@dataclass
class HttpAuthorizer:
    """A JWT authorizer of an HTTP API: the token must be signed by the issuer's JWKS and meant for one of
    the audiences (its `aud`, else its `client_id`)."""

    name: str
    issuer: str
    audiences: list[str]
    identity_sources: list[str] = field(default_factory=lambda: ["$request.header.Authorization"])


@dataclass
class HttpRoute:
    route_key: str  # "GET /items/{id}", "ANY /{proxy+}" or "$default"
    function: str  # logical id of the Lambda proxy integration's function (payload format 2.0)
    authorizer: HttpAuthorizer | None = None
    scopes: list[str] = field(default_factory=list)  # the route's authorizationScopes (any one suffices)

    @property
    def method(self) -> str:
        return "ANY" if self.route_key == "$default" else self.route_key.split(" ", 1)[0].upper()

    @property
    def path(self) -> str | None:
        """The route's path template; None for `$default`, which takes what no other route matches."""
        return None if self.route_key == "$default" else self.route_key.split(" ", 1)[1]


@dataclass
class HttpCors:
    """An HTTP API's CorsConfiguration (x-amazon-apigateway-cors): API Gateway answers preflights itself."""

    allow_origins: list[str] = field(default_factory=list)
    allow_methods: list[str] = field(default_factory=list)
    allow_headers: list[str] = field(default_factory=list)
    expose_headers: list[str] = field(default_factory=list)
    max_age_s: int | None = None
    allow_credentials: bool = False


@dataclass
class HttpApi:
    """An AWS::ApiGatewayV2::Api with ProtocolType HTTP (SAM's AWS::Serverless::HttpApi)."""

    logical_id: str
    api_id: str
    name: str
    stage: str = "$default"  # "$default" has no stage segment in the URL
    routes: list[HttpRoute] = field(default_factory=list)
    cors: HttpCors | None = None

    @staticmethod
    def local_endpoint(rest_endpoint: str, api_id: str) -> str:
        """An HTTP API's ApiEndpoint locally: AWS's https://{api-id}.execute-api… with the host's API id as
        the first path segment on the REST gateway's port."""
        return f"{rest_endpoint}/{api_id}"

    @property
    def stage_path(self) -> str:
        """The stage's prefix of every path, as in AWS's invoke URL ("" for the $default stage)."""
        return "" if self.stage == "$default" else f"/{self.stage}"


@dataclass
class ProvisionedResource:
    logical_id: str
    type: str
    physical_id: str  # what Ref returns
    attributes: dict[str, str] = field(default_factory=dict)  # what GetAtt returns


@dataclass
class CloudModel:
    region: str
    account_id: str
    endpoints: Endpoints
    resources: dict[str, ProvisionedResource] = field(default_factory=dict)
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    sqs_mappings: list[SqsMapping] = field(default_factory=list)
    stream_mappings: list[StreamMapping] = field(default_factory=list)
    schedules: list[ScheduleSpec] = field(default_factory=list)
    rest_routes: list[RestRoute] = field(default_factory=list)
    # api logical id -> gateway response type (DEFAULT_4XX, UNAUTHORIZED, ...) -> headers to add
    rest_gateway_responses: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    ws_apis: list[WsApi] = field(default_factory=list)
    http_apis: list[HttpApi] = field(default_factory=list)
    s3_triggers: list[S3Trigger] = field(default_factory=list)
    sns_triggers: list[SnsTrigger] = field(default_factory=list)
    async_invoke: dict[str, AsyncInvokeConfig] = field(default_factory=dict)  # function logical id -> config
    outputs: dict[str, str] = field(default_factory=dict)


class LocalCloudError(RuntimeError):
    """A problem the user of `busline local up` has to fix; printed without a traceback."""


class ProvisionError(LocalCloudError):
    pass


class PortInUse(LocalCloudError):
    def __init__(self, host: str, port: int, what: str) -> None:
        super().__init__(f"port {port} on {host} ({what}) is already in use; pick another base with --port")
        self.host = host
        self.port = port
