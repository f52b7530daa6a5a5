"""`busline local up`: moto + Postgres + provisioning + runtime + event sources + gateways, and a clean stop.

Start order matters: the ports are checked and the template translated first, so a busy port or a
broken template fails before anything starts; moto must be up before provisioning; Postgres too,
because its URL becomes the `DatabaseUrl` parameter; endpoints.json is written last, because its
existence tells callers (tests, the CLI) that everything is ready. Stopping goes in reverse and
leaves no process or port.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import boto3
from rich.console import Console

from busline.auth import create_user, new_password
from busline.localcloud.chaos import ChaosConfig
from busline.localcloud.demo import upload_demo_data
from busline.localcloud.event_sources import build_event_sources
from busline.localcloud.gateways import (
    RestGateway,
    StaticSite,
    WebSocketGateway,
    http_api_urls,
    websocket_api_urls,
)
from busline.localcloud.intrinsics import DEFAULT_ACCOUNT_ID
from busline.localcloud.model import CloudModel, Endpoints, LocalCloudError, PortInUse
from busline.localcloud.notifications import Notifications
from busline.localcloud.oauth2 import TOKEN_PATH, TokenEndpoint
from busline.localcloud.postgres import start_postgres
from busline.localcloud.provision import SNS_BRIDGE_TYPE, provision
from busline.localcloud.runtime import FunctionRuntime
from busline.localcloud.state import STATE_DIR, StateKeeper, StateStore, fingerprint
from busline.localcloud.template import load_and_translate
from busline.localcloud.ttl_sweeper import TtlSweeper, interval_from_environment

DATABASE_URL_PARAMETER = "DatabaseUrl"
LOOPBACK_SOURCES_PARAMETER = "AllowLoopbackHttpSources"
WEB_ORIGIN_PARAMETER = "WebOrigin"
ENDPOINTS_FILE = "endpoints.json"
# what SNS e-mail subscriptions would be mailed, one <address>.jsonl each (moto_patches.deliver_email_to_outbox)
OUTBOX_DIR = "outbox"
DEMO_USERNAME = "demo"
_PORT_ROLES = ("REST API", "WebSocket API", "web page", "moto (AWS APIs)", "@connections management API",
               "Cognito OAuth2 token endpoint")


def local_parameters(
    declared: Mapping[str, Any], given: Mapping[str, str], database_url: str, web_origin: str = ""
) -> dict[str, str]:
    """The template parameters of a local stack: each `--param` as given, else, where the template declares
    them, the local Postgres (the load role's URL), sources on loopback, which is where tests and
    demos serve http sources from, and the local page as the one browser origin."""
    parameters = dict(given)
    local = [(DATABASE_URL_PARAMETER, database_url), (LOOPBACK_SOURCES_PARAMETER, "true")]
    if web_origin:
        local.append((WEB_ORIGIN_PARAMETER, web_origin))
    for name, value in local:
        if name in declared:
            parameters.setdefault(name, value)
    return parameters


class _Startable(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


class SnsForwarder:
    """Publish what EventBridge put into a bridge queue to the SNS topic the rule really targets.

    moto's PutEvents ignores SNS targets (see provision.SNS_BRIDGE_TYPE); this closes that gap.
    """

    def __init__(self, sqs: Any, sns: Any, queue_url: str, topic_arn: str) -> None:
        self.sqs = sqs
        self.sns = sns
        self.queue_url = queue_url
        self.topic_arn = topic_arn
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sns-bridge {topic_arn}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.forward_once(wait_s=1)
            except Exception:  # moto going away at shutdown, or a transient error: try again
                self._stopping.wait(0.5)

    def forward_once(self, wait_s: int = 0) -> int:
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s
        ).get("Messages", [])
        for message in messages:
            self.sns.publish(TopicArn=self.topic_arn, Message=message["Body"])
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)


class _StopRequested(BaseException):
    """SIGINT/SIGTERM arrived while the cloud was still starting (a BaseException, like KeyboardInterrupt,
    so no `except Exception` on the way turns it into an ordinary error)."""


@dataclass
class CloudOptions:
    template: Path = Path("template.yaml")
    data_dir: Path = Path(".busline")
    host: str = "127.0.0.1"
    port: int = 3000
    verbose: bool = False
    parameters: dict[str, str] = field(default_factory=dict)
    chaos_spec: str = ""
    chaos_seed: int | None = None
    schedule_scale: float = 1.0
    demo: bool = False
    region: str = "us-east-1"
    # start with no AWS state even if the data dir holds some (state.py)
    fresh: bool = False
    # seconds between TTL sweeps; None: BUSLINE_TTL_SWEEP_SECONDS, else 60; 0 or less: expired items stay
    ttl_sweep_interval_s: float | None = None


def check_ports_free(host: str, base_port: int) -> None:
    for offset, role in enumerate(_PORT_ROLES):
        port = base_port + offset
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                raise PortInUse(host, port, role) from None


class LocalCloud:
    def __init__(self, options: CloudOptions, console: Console | None = None) -> None:
        if options.schedule_scale <= 0:
            raise LocalCloudError(f"--schedule-scale must be positive, got {options.schedule_scale}")
        self.options = options
        self.ttl_sweep_interval_s = (
            interval_from_environment(os.environ) if options.ttl_sweep_interval_s is None
            else options.ttl_sweep_interval_s
        )
        self.console = console or Console()
        self.data_dir = options.data_dir.resolve()
        self.template = options.template.resolve()
        self.model: CloudModel | None = None
        self.endpoints_json: dict[str, Any] = {}
        self._stop_steps: list[tuple[str, Callable[[], None]]] = []  # run in reverse on stop
        self._stop_event = threading.Event()
        self._starting = False
        self._serves_web = False
        self.restored_age_s: float | None = None  # how old the restored AWS state was, None: a new stack
        try:
            self.chaos = ChaosConfig.parse(options.chaos_spec or "", options.chaos_seed)
        except ValueError as exc:
            raise LocalCloudError(f"--chaos: {exc}") from exc

    # -- lifecycle ------------------------------------------------------------------------------

    def up(self) -> None:
        """Start everything, wait for SIGINT/SIGTERM, stop everything."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            try:
                self.start()
            except _StopRequested:
                return
            self._print_banner()
            # A signal may land on any thread; a bare wait() could then sleep on although the handler
            # already ran flags for the main thread. Waking up regularly lets Python run the handler.
            while not self._stop_event.wait(0.5):
                pass
            self.console.print("stopping the local cloud…")
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def start(self) -> dict[str, Any]:
        """Bring the cloud up and write endpoints.json; on any failure stop what already started."""
        self._starting = True
        try:
            self._start()
        except BaseException:
            self._starting = False  # a second signal must not interrupt the cleanup
            self.stop()
            raise
        self._starting = False
        return self.endpoints_json

    def stop(self) -> None:
        while self._stop_steps:
            what, step = self._stop_steps.pop()
            try:
                step()
            except Exception as exc:  # keep stopping the rest; one broken part must not orphan others
                self.console.print(f"[yellow]could not stop {what} cleanly: {exc}[/yellow]")

    # -- start steps ----------------------------------------------------------------------------

    def _start(self) -> None:
        options = self.options
        if not self.template.is_file():
            raise LocalCloudError(f"template {self.template} does not exist (pass --template)")
        check_ports_free(options.host, options.port)
        # Translating first costs nothing and reports template mistakes before anything has started.
        cfn = load_and_translate(self.template, options.region)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        store = StateStore(self.data_dir)
        if options.fresh:
            store.forget()
        self._start_moto(options.port + 3)

        postgres = start_postgres(self.data_dir, store.load_role_password())
        self._stop_steps.append(("PostgreSQL", postgres.stop))
        # endpoints.json gets the administrator's URL (tests, operators); the functions get the load role's.
        endpoints = Endpoints.for_base_port(options.host, options.port, postgres=postgres.url)

        parameters = local_parameters(cfn.get("Parameters") or {}, options.parameters, postgres.load_url, endpoints.web)
        self.model = model = self._restore_or_provision(store, cfn, endpoints, parameters)
        keeper = StateKeeper(store)
        keeper.start()
        # stopped after everything started below (functions included), so its last snapshot sees no work in flight
        self._stop_steps.append(("the AWS state", keeper.stop))

        runtime = FunctionRuntime(model, self.data_dir, chaos=self.chaos, verbose=options.verbose)
        self._stop_steps.append(("the function runtime", runtime.close))

        self.endpoints_json = {
            **endpoints.as_json(),
            "region": options.region,
            "outputs": model.outputs,
            "chaos": self.chaos.describe(),
        }
        # logical id -> URL, each API's own (`websocket` above stays the first WebSocket API's)
        self.endpoints_json["websocketApis"] = websocket_api_urls(model)
        self.endpoints_json["httpApis"] = http_api_urls(model)
        parts: list[tuple[str, _Startable]] = [
            ("the REST gateway", RestGateway(model, runtime, options.host, options.port)),
            (
                "the WebSocket gateway",
                WebSocketGateway(model, runtime, options.host, options.port + 1, options.port + 4),
            ),
        ]
        if "UserPoolId" in model.outputs:
            cognito = self._aws_client("cognito-idp", endpoints)
            self.endpoints_json["auth"] = self._auth_section(model, endpoints, cognito)
            parts.append(("the OAuth2 token endpoint",
                          TokenEndpoint(cognito, options.region, options.host, options.port + 5)))
        web_dir = self.template.parent / "web"
        self._serves_web = web_dir.is_dir()
        if self._serves_web:
            parts.append(("the web page", StaticSite(web_dir, self._page_config(), options.host, options.port + 2)))
        else:
            self.console.print(f"no web page: {web_dir} does not exist", highlight=False)
        for bridge in model.resources.values():
            if bridge.type == SNS_BRIDGE_TYPE:
                forwarder = SnsForwarder(
                    self._aws_client("sqs", endpoints), self._aws_client("sns", endpoints),
                    bridge.attributes["QueueUrl"], bridge.attributes["TopicArn"],
                )
                parts.append((f"the SNS forwarder of {bridge.logical_id}", forwarder))
        # always: a bucket notification or a lambda subscription may also be made at run time
        parts.append(("S3 notifications and SNS lambda subscriptions", Notifications(model, runtime)))
        for index, source in enumerate(build_event_sources(model, runtime, self.chaos, options.schedule_scale)):
            parts.append((f"event source #{index + 1} ({type(source).__name__})", source))
        # started last, stopped first: nothing is deleted while the stream pollers shut down
        if self.ttl_sweep_interval_s > 0:
            parts.append(("the TTL sweeper", TtlSweeper(self._aws_client("dynamodb", endpoints), self.ttl_sweep_interval_s)))
        for what, part in parts:
            part.start()
            self._stop_steps.append((what, part.stop))

        if options.demo:
            keys = upload_demo_data(model, self._aws_client("s3", endpoints))
            self.console.print(f"demo data: {len(keys)} files in s3://{model.outputs['DataBucketName']}/shared/nycflights13/")

        self._write_endpoints_file()

    def _restore_or_provision(
        self, store: StateStore, cfn: dict[str, Any], endpoints: Endpoints, parameters: dict[str, str]
    ) -> CloudModel:
        """The AWS state of the last stop when it was saved for this very stack, else a new stack."""
        region = self.options.region
        current = fingerprint(cfn, parameters, region, endpoints.as_json())
        saved = store.saved_fingerprint()
        if saved == current:
            restored = store.restore()
            self.restored_age_s = restored.snapshot_age_s
            model: CloudModel = restored.model
            return model
        if saved is not None:
            self.console.print(
                "the template, its parameters or the ports changed since the AWS state in "
                f"{store.folder} was saved: starting with an empty stack", highlight=False,
            )
            store.forget()
        model = provision(cfn, endpoints, parameters, region, DEFAULT_ACCOUNT_ID)
        store.save_model(model, current)
        return model

    def _page_config(self) -> dict[str, Any]:
        """What the browser page needs: where the APIs are and how to sign in, never a secret it has no
        use for (the database URL, the machine client's secret)."""
        info = self.endpoints_json
        config: dict[str, Any] = {key: info[key] for key in ("rest", "websocket", "region") if key in info}
        auth = info.get("auth")
        if auth:
            config["auth"] = {key: auth[key] for key in ("region", "cognitoEndpoint", "userPoolId", "clientId",
                                                         "demoUser")}
        return config

    def _auth_section(self, model: CloudModel, endpoints: Endpoints, cognito: Any) -> dict[str, Any]:
        """Where and how to sign in, with a demo user made the way an operator makes one on AWS."""
        pool_id = model.outputs["UserPoolId"]
        password = new_password()  # a new one each start: it is only ever written to endpoints.json
        demo_sub = create_user(cognito, pool_id, DEMO_USERNAME, password)
        auth: dict[str, Any] = {
            "region": self.options.region,
            "cognitoEndpoint": endpoints.aws,
            "userPoolId": pool_id,
            "clientId": model.outputs.get("UserPoolClientId", ""),
            "demoUser": {"username": DEMO_USERNAME, "password": password, "sub": demo_sub},
        }
        machine_client = model.outputs.get("MachineClientId")
        if machine_client:
            secret = cognito.describe_user_pool_client(UserPoolId=pool_id, ClientId=machine_client)
            auth["machineClient"] = {
                "clientId": machine_client,
                "clientSecret": secret["UserPoolClient"].get("ClientSecret", ""),
                "tokenUrl": endpoints.oauth + TOKEN_PATH,
                "scope": " ".join(secret["UserPoolClient"].get("AllowedOAuthScopes", [])),
            }
        return auth

    def _start_moto(self, port: int) -> None:
        # moto is a heavy import, needed only here
        from busline.localcloud.moto_patches import (
            apply_aws_edges,
            deliver_email_to_outbox,
            keep_put_bodies,
            make_dynamodb_atomic,
            serve_ranges_without_reading_whole_objects,
        )
        from busline.localcloud.moto_server import KeepAliveMotoServer
        from busline.localcloud.moto_speed import make_moto_calls_fast
        from busline.localcloud.state import install_request_gate

        make_moto_calls_fast()
        install_request_gate()
        apply_aws_edges()
        make_dynamodb_atomic()
        keep_put_bodies()
        serve_ranges_without_reading_whole_objects()
        deliver_email_to_outbox(self.data_dir / OUTBOX_DIR)

        if not self.options.verbose:
            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per AWS call otherwise
        server = KeepAliveMotoServer(self.options.host, port)
        server.start()
        self._stop_steps.append(("moto", server.stop))

    def _aws_client(self, service: Any, endpoints: Endpoints) -> Any:  # Any: stubs type literal names
        return boto3.client(
            service,
            endpoint_url=endpoints.aws,
            region_name=self.options.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def _write_endpoints_file(self) -> None:
        path = self.data_dir / ENDPOINTS_FILE
        temporary = path.with_suffix(".json.tmp")
        # it holds the demo user's password: readable by this user only
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as stream:
            stream.write(json.dumps(self.endpoints_json, indent=2) + "\n")
        os.replace(temporary, path)  # readers poll for the file: never let them see half of it
        self._stop_steps.append((ENDPOINTS_FILE, lambda: path.unlink(missing_ok=True)))

    # -- signals and banner ---------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop_event.set()
        if self._starting:
            raise _StopRequested()

    def _print_banner(self) -> None:
        info = self.endpoints_json
        model = self.model
        assert model is not None
        lines = [
            "[bold green]Busline local cloud is up[/bold green]",
            f"  REST API     {info['rest']}",
            f"  WebSocket    {info['websocket']}",
            # several WebSocket APIs: each at its own /<api-id>/<stage>
            *(f"    {url}   ({name})" for name, url in info["websocketApis"].items() if len(model.ws_apis) > 1),
            *(f"  HTTP API     {url}   ({name})" for name, url in info["httpApis"].items()),
            f"  Web page     {info['web']}" + ("" if self._serves_web else "   (not served: no web/ folder)"),
            f"  AWS (moto)   {info['aws']}   (AWS_ENDPOINT_URL)",
            f"  @connections {info['management']}",
            f"  PostgreSQL   {info['postgres']}",
            f"  Region       {info['region']}",
            f"  {len(model.functions)} functions, {len(model.sqs_mappings)} queue, "
            f"{len(model.stream_mappings)} stream, {len(model.s3_triggers)} S3 and {len(model.sns_triggers)} SNS "
            f"triggers, {len(model.schedules)} schedules, "
            f"{len(model.rest_routes)} REST routes, {len(model.ws_apis)} WebSocket APIs, "
            f"{len(model.http_apis)} HTTP APIs",
            f"  {info['chaos']}",
            "  AWS state: " + (
                f"restored from {self.data_dir / STATE_DIR} (as it was {self.restored_age_s:.0f} s before this start; "
                "--fresh starts empty)" if self.restored_age_s is not None
                else f"a new stack, kept in {self.data_dir / STATE_DIR} across restarts"
            ),
            f"  endpoints: {self.data_dir / ENDPOINTS_FILE}   logs: {self.data_dir / 'logs'}   "
            f"mail (SNS e-mail subscriptions): {self.data_dir / OUTBOX_DIR}",
        ]
        auth = info.get("auth")
        if auth:
            demo = auth["demoUser"]
            lines += [
                "[bold]Sign in[/bold] (Cognito user pool " + auth["userPoolId"] + "):",
                f"  user {demo['username']}   password {demo['password']}   (new each start; the page is prefilled)",
                "  terminal: .venv/bin/busline login   (stores tokens; every busline command uses them)",
                "  a token for curl or the WebSocket: TOKEN=$(.venv/bin/busline token)",
                f"  WebSocket: {info['websocket']}/?token=$TOKEN",
            ]
        if self.options.demo:
            lines += [
                "[bold]Run the flights demo[/bold] (nycflights13 -> Postgres table flights in your schema):",
                f"  in a browser: {info['web']}  -> sign in -> 'Run flights demo'",
                "  in a terminal: .venv/bin/busline submit flights --follow",
                f"""  with curl: curl -s -XPOST {info['rest']}/tasks -H "Authorization: $TOKEN" """
                """-d '{"pipeline": "flights"}'""",
            ]
        lines.append("  Ctrl+C to stop")
        for line in lines:
            self.console.print(line, highlight=False, soft_wrap=True)
