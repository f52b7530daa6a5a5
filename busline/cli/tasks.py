"""`busline submit`, `busline status`, `busline tasks`: the REST API and live progress from the terminal."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from busline.auth import SignInError
from busline.cli import logs as log_lines
from busline.cli import progress_view, session
from busline.cli.endpoints import (
    Deployment,
    EndpointsError,
    EndpointsOption,
    RegionOption,
    StackOption,
    resolve,
)
from busline.keyvalue import json_scalar, split_pairs

HTTP_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 1.0
# A quiet WebSocket is not proof of a stuck task (a push may have been lost): check with a GET after this long.
WEBSOCKET_QUIET_S = 5.0
# $connect runs a function: a cold start takes seconds on AWS and up to ~8 s in the local cloud.
WEBSOCKET_OPEN_TIMEOUT_S = 20.0
EXIT_FAILED = 1
EXIT_INVALID = 2

console = Console()
err_console = Console(stderr=True)


class ApiError(Exception):
    def __init__(self, status: int, body: Any, url: str) -> None:
        super().__init__(f"HTTP {status} from {url}: {body}")
        self.status = status
        self.body = body
        self.url = url


class ApiUnreachable(Exception):
    pass


class ApiClient:
    """The Busline REST API over urllib (no extra dependency), signed in with `token()` when given."""

    def __init__(self, base_url: str, timeout_s: float = HTTP_TIMEOUT_S,
                 token: Callable[[], str | None] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._token = token or (lambda: None)

    def current_token(self) -> str | None:
        return self._token()

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", "/tasks", body)

    def get_task(self, task_id: str) -> dict[str, Any]:
        return self._request("GET", f"/tasks/{urllib.parse.quote(task_id, safe='')}")

    def cancel(self, task_id: str) -> dict[str, Any]:
        return self._request("POST", f"/tasks/{urllib.parse.quote(task_id, safe='')}/cancel", {})

    def list_pipelines(self) -> dict[str, Any]:
        return self._request("GET", "/pipelines")

    def create_schedule(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", "/schedules", body)

    def list_schedules(self) -> dict[str, Any]:
        return self._request("GET", "/schedules")

    def delete_schedule(self, schedule_id: str) -> None:
        self._request("DELETE", f"/schedules/{urllib.parse.quote(schedule_id, safe='')}")

    def list_tasks(self, limit: int, next_token: str | None = None) -> dict[str, Any]:
        query = {"limit": str(limit)} | ({"nextToken": next_token} if next_token else {})
        return self._request("GET", "/tasks?" + urllib.parse.urlencode(query))

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.base_url + path
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        token = self._token()
        if token:
            headers["Authorization"] = token
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return _parse_body(response.read())
        except urllib.error.HTTPError as error:
            raise ApiError(error.code, _parse_body(error.read()), url) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ApiUnreachable(f"cannot reach the REST API at {url}: {reason}") from None


def _parse_body(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return raw.decode(errors="replace")


def field_errors(body: Any) -> list[str]:
    """Readable lines from a 400/422 body: Powertools' `detail` list, an `errors` list, or a `message`."""
    if isinstance(body, dict):
        for key in ("detail", "errors"):
            entries = body.get(key)
            if isinstance(entries, list) and entries:
                return [_describe_field_error(entry) for entry in entries]
        for key in ("message", "error", "detail"):
            if isinstance(body.get(key), str):
                return [body[key]]
    return [str(body)]


def _describe_field_error(entry: Any) -> str:
    if not isinstance(entry, dict):
        return str(entry)
    location = entry.get("loc") or entry.get("field") or entry.get("path")
    if isinstance(location, list | tuple):
        location = _dotted(list(location))
    message = entry.get("msg") or entry.get("message") or entry.get("type") or "invalid"
    return f"{location}: {message}" if location else str(message)


# POST /tasks validates a tagged union; Powertools puts the tag right after "body" in each location.
REQUEST_KINDS = frozenset({"spec", "pipeline"})


def _dotted(location: list[Any]) -> str:
    if location and location[0] == "body":
        location = location[1:]
    if len(location) > 1 and location[0] in REQUEST_KINDS:
        location = location[1:]
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def parse_params(pairs: list[str], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """`k=v` pairs; a parameter the pipeline's JSON Schema types as a string stays text, any other value
    that reads as a JSON number/bool/null becomes one (without a schema, every value is read so)."""
    properties = (schema or {}).get("properties") or {}
    try:
        return {
            key: value if _is_text(properties.get(key)) else json_scalar(value)
            for key, value in split_pairs(pairs).items()
        }
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--param") from None


def _is_text(prop: Any) -> bool:
    if not isinstance(prop, dict):
        return False
    types = [prop.get("type"), *(choice.get("type") for choice in prop.get("anyOf", []) if isinstance(choice, dict))]
    return "string" in types and not {"integer", "number", "boolean"} & set(types)


def _params_schema(api: ApiClient, pipeline: str) -> dict[str, Any] | None:
    """The pipeline's params schema from GET /pipelines; None when the API cannot say (the API still
    checks every parameter, naming a bad one)."""
    try:
        listed = api.list_pipelines()
    except (ApiError, ApiUnreachable):
        return None
    for item in listed.get("items", []) if isinstance(listed, dict) else []:
        if isinstance(item, dict) and item.get("name") == pipeline and isinstance(item.get("params"), dict):
            return dict(item["params"])
    return None


def list_pipelines(
    endpoints: EndpointsOption = None,
    stack: StackOption = None,
    region: RegionOption = None,
) -> None:
    """List the named pipelines and their parameters (`busline submit NAME --param KEY=VALUE`)."""
    api = _api(_deployment(endpoints, stack, region))
    try:
        listed = api.list_pipelines()
    except (ApiError, ApiUnreachable) as error:
        raise _fail_on_api_error(error) from None
    console.print(progress_view.pipelines_table(listed.get("items", []) if isinstance(listed, dict) else []))


def read_spec(path: Path) -> dict[str, Any]:
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise typer.BadParameter(f"{path} does not exist", param_hint="--spec") from None
    except json.JSONDecodeError as error:
        raise typer.BadParameter(f"{path} is not valid JSON: {error}", param_hint="--spec") from None
    if not isinstance(spec, dict):
        raise typer.BadParameter(f"{path} must hold a JSON object (a task spec)", param_hint="--spec")
    return spec


OUTPUT_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9]+)\}")


def fill_outputs(value: Any, outputs: dict[str, str], origin: str) -> Any:
    """Replace `${OutputName}` in spec strings (e.g. `s3://${DataBucketName}/…`) so one file fits any deployment."""
    if isinstance(value, dict):
        return {key: fill_outputs(item, outputs, origin) for key, item in value.items()}
    if isinstance(value, list):
        return [fill_outputs(item, outputs, origin) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in outputs:
            known = ", ".join(sorted(outputs)) or "none"
            raise typer.BadParameter(
                f"${{{name}}} is not an output of {origin} (known outputs: {known})", param_hint="--spec"
            )
        return outputs[name]

    return OUTPUT_PLACEHOLDER.sub(substitute, value)


def _deployment(endpoints: Path | None, stack: str | None, region: str | None) -> Deployment:
    try:
        return resolve(endpoints_file=endpoints, stack=stack, region=region)
    except EndpointsError as error:
        err_console.print(str(error), style="red", markup=False)
        raise typer.Exit(EXIT_FAILED) from None


def _api(deployment: Deployment) -> ApiClient:
    try:
        rest_url = deployment.require_rest_url()
        session.access_token(deployment)  # sign in or refresh now, so a problem shows before any request
    except (EndpointsError, session.NotSignedIn, SignInError) as error:
        err_console.print(str(error), style="red", markup=False)
        raise typer.Exit(EXIT_FAILED) from None
    # asked again per request: a long --follow outlives an access token, and this refreshes it
    return ApiClient(rest_url, token=lambda: session.access_token(deployment))


def _fail_on_api_error(error: ApiError | ApiUnreachable, task_id: str | None = None) -> typer.Exit:
    if isinstance(error, ApiUnreachable):
        err_console.print(f"{error} (is `busline local up` running?)", style="red", markup=False)
        return typer.Exit(EXIT_FAILED)
    if error.status == 401:
        err_console.print("the API refused the sign-in (HTTP 401): run `busline login` again", style="red", markup=False)
        return typer.Exit(EXIT_FAILED)
    if error.status == 404 and task_id:
        err_console.print(f"task {task_id} not found", style="red", markup=False)
        return typer.Exit(EXIT_FAILED)
    if error.status == 409:
        message = error.body.get("message") if isinstance(error.body, dict) else error.body
        err_console.print(f"refused (HTTP 409): {message}", style="red", markup=False)
        return typer.Exit(EXIT_FAILED)
    if error.status in (400, 422):
        err_console.print(f"The API rejected the request (HTTP {error.status}):", style="red", markup=False)
        for line in field_errors(error.body):
            err_console.print(f"  - {line}", markup=False)
        return typer.Exit(EXIT_INVALID)
    err_console.print(f"HTTP {error.status} from {error.url}: {error.body}", style="red", markup=False)
    return typer.Exit(EXIT_FAILED)


def follow_task(
    api: ApiClient,
    websocket_url: str | None,
    task_id: str,
    on_snapshot: Callable[[dict[str, Any]], None],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Feed snapshots to on_snapshot until the task ends; WebSocket pushes when possible, else 1 s polling."""
    if websocket_url:
        try:
            final = _follow_websocket(api, websocket_url, task_id, on_snapshot)
        except _WebSocketUnavailable as problem:
            err_console.print(f"live progress unavailable ({problem}); polling every second",
                              style="yellow", markup=False)
        else:
            return final
    while True:
        snapshot = api.get_task(task_id)
        on_snapshot(snapshot)
        if progress_view.is_terminal(snapshot):
            return snapshot
        sleep(POLL_INTERVAL_S)


class _WebSocketUnavailable(Exception):
    pass


def _follow_websocket(
    api: ApiClient, url: str, task_id: str, on_snapshot: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
    from websockets.sync.client import connect

    token = api.current_token()
    # browsers cannot set headers on a WebSocket, so the API takes the token in the query string (never
    # printed: messages below name the bare URL)
    signed_url = f"{url.rstrip('/')}/?{urllib.parse.urlencode({'token': token})}" if token else url
    try:
        connection = connect(signed_url, open_timeout=WEBSOCKET_OPEN_TIMEOUT_S, close_timeout=2)
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as error:
        raise _WebSocketUnavailable(f"cannot connect to {url}: {error}") from None
    shown_ms = -1  # updatedAtMs of the snapshot shown last
    with connection:
        connection.send(json.dumps({"action": "subscribe", "taskId": task_id}))
        while True:
            try:
                raw = connection.recv(timeout=WEBSOCKET_QUIET_S)
            except TimeoutError:
                snapshot = api.get_task(task_id)
            except ConnectionClosed:
                raise _WebSocketUnavailable(f"{url} closed the connection") from None
            else:
                try:
                    message = json.loads(raw)
                except json.JSONDecodeError:
                    continue  # not a progress message (e.g. a usage hint from the $default route)
                if not isinstance(message, dict):
                    continue
                if "status" not in message and isinstance(message.get("error"), str):
                    raise _WebSocketUnavailable(message["error"])
                if message.get("taskId") != task_id:
                    continue
                snapshot = message
            # The answer to subscribe may arrive after a push made while it was read: never step back.
            updated_ms = snapshot.get("updatedAtMs")
            if isinstance(updated_ms, int) and updated_ms < shown_ms:
                continue
            shown_ms = updated_ms if isinstance(updated_ms, int) else shown_ms
            on_snapshot(snapshot)
            if progress_view.is_terminal(snapshot):
                return snapshot


def submit(
    pipeline: Annotated[str | None, typer.Argument(help="Named pipeline, e.g. flights.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="Pipeline parameter KEY=VALUE (repeat).")] = None,
    spec: Annotated[Path | None, typer.Option("--spec", help="Ad-hoc task spec (JSON file).")] = None,
    follow: Annotated[bool, typer.Option("--follow", help="Show live progress until the task ends.")] = False,
    endpoints: EndpointsOption = None,
    stack: StackOption = None,
    region: RegionOption = None,
) -> None:
    """Submit a task (a named pipeline or an ad-hoc spec) and print its id."""
    if (pipeline is None) == (spec is None):
        raise typer.BadParameter("give either a PIPELINE name or --spec FILE (exactly one)")
    if spec is not None and param:
        raise typer.BadParameter("--param only applies to a named pipeline, not to --spec", param_hint="--param")
    deployment = _deployment(endpoints, stack, region)
    api = _api(deployment)
    if spec is not None:
        body = fill_outputs(read_spec(spec), deployment.outputs, deployment.origin)
    else:
        schema = _params_schema(api, str(pipeline)) if param else None
        body = {"pipeline": pipeline, "params": parse_params(param or [], schema)}
    try:
        accepted = api.submit(body)
    except (ApiError, ApiUnreachable) as error:
        raise _fail_on_api_error(error) from None
    task_id = str(accepted.get("taskId", "")) if isinstance(accepted, dict) else ""
    if not task_id:
        err_console.print(f"the API answered without a taskId: {accepted}", style="red", markup=False)
        raise typer.Exit(EXIT_FAILED)
    typer.echo(task_id)
    if not follow:
        return
    try:
        with progress_view.ProgressView(err_console, task_id) as view:
            final = follow_task(api, deployment.websocket_url, task_id, view.update)
    except (ApiError, ApiUnreachable) as error:
        raise _fail_on_api_error(error, task_id) from None
    except KeyboardInterrupt:
        err_console.print(f"stopped following; the task goes on: busline status {task_id}")
        raise typer.Exit(130) from None
    console.print(progress_view.counts_table(final))
    cost = progress_view.cost_text(final)
    if cost:
        console.print(f"Cost: {cost}", markup=False)
    if final.get("status") == "CANCELLED":
        err_console.print(f"Task {task_id} was CANCELLED", style="yellow", markup=False)
        raise typer.Exit(EXIT_FAILED)
    if final.get("status") != "SUCCEEDED":
        err_console.print(f"Task {task_id} FAILED: {progress_view.failure_text(final)}",
                          style="red", markup=False)
        raise typer.Exit(EXIT_FAILED)


def status(
    task_id: Annotated[str, typer.Argument(help="Task id (printed by `busline submit`).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw snapshot JSON.")] = False,
    endpoints: EndpointsOption = None,
    stack: StackOption = None,
    region: RegionOption = None,
) -> None:
    """Show one task: status, phases, counts and its error if it failed."""
    api = _api(_deployment(endpoints, stack, region))
    try:
        snapshot = api.get_task(task_id)
    except (ApiError, ApiUnreachable) as error:
        raise _fail_on_api_error(error, task_id) from None
    if as_json:
        typer.echo(json.dumps(snapshot, indent=2, sort_keys=True))
    else:
        console.print(progress_view.task_detail(snapshot))


def cancel(
    task_id: Annotated[str, typer.Argument(help="Task id (printed by `busline submit`).")],
    endpoints: EndpointsOption = None,
    stack: StackOption = None,
    region: RegionOption = None,
) -> None:
    """Cancel a running task: it ends now and its target stays as it was (commit "task")."""
    api = _api(_deployment(endpoints, stack, region))
    try:
        snapshot = api.cancel(task_id)
    except (ApiError, ApiUnreachable) as error:
        raise _fail_on_api_error(error, task_id) from None
    console.print(f"Task {task_id}: {snapshot.get('status', '?')}", markup=False)
    console.print(progress_view.counts_table(snapshot))


def list_tasks(
    limit: Annotated[int, typer.Option("--limit", min=1, max=100, help="How many tasks, newest first.")] = 20,
    next_token: Annotated[str | None, typer.Option("--next-token", help="Continue a previous listing.")] = None,
    endpoints: EndpointsOption = None,
    stack: StackOption = None,
    region: RegionOption = None,
) -> None:
    """List recent tasks, newest first."""
    api = _api(_deployment(endpoints, stack, region))
    try:
        page = api.list_tasks(limit, next_token)
    except (ApiError, ApiUnreachable) as error:
        raise _fail_on_api_error(error) from None
    items, token = _items_and_token(page)
    console.print(progress_view.tasks_table(items))
    if token:
        console.print(f"more: busline tasks --limit {limit} --next-token {token}", markup=False)


def _items_and_token(page: Any) -> tuple[list[dict[str, Any]], str | None]:
    if isinstance(page, list):
        return page, None
    if isinstance(page, dict):
        items = page.get("items", page.get("tasks")) or []
        return [item for item in items if isinstance(item, dict)], page.get("nextToken")
    return [], None


def logs(
    task_id: Annotated[str, typer.Argument(help="Task id (printed by `busline submit`).")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until the task ends.")] = False,
    endpoints: EndpointsOption = None,
    stack: StackOption = None,
    region: RegionOption = None,
) -> None:
    """Print a task's log lines from every function, in time order (its correlation id ties them)."""
    deployment = _deployment(endpoints, stack, region)
    api = _api(deployment)

    def snapshot() -> dict[str, Any]:
        try:
            return api.get_task(task_id)
        except (ApiError, ApiUnreachable) as error:
            raise _fail_on_api_error(error, task_id) from None

    task = snapshot()
    correlation_id = task.get("correlationId")
    if not log_lines.safe_id(task_id) or (correlation_id is not None and not log_lines.safe_id(correlation_id)):
        err_console.print(f"task {task_id} not found", style="red", markup=False)
        raise typer.Exit(EXIT_FAILED)
    read: Callable[[], list[log_lines.LogLine]]
    if deployment.stack and not deployment.is_local:
        client = deployment.client("logs")
        groups = log_lines.stack_log_groups(deployment.client("cloudformation"), deployment.stack)
        window = {"since": log_lines.created_at(task) - timedelta(minutes=1)}

        def read() -> list[log_lines.LogLine]:
            now = datetime.now(UTC)
            found = log_lines.insights_lines(client, groups, correlation_id, task_id, window["since"], now)
            window["since"] = now
            return found

    elif deployment.logs_dir is not None and deployment.logs_dir.is_dir():
        read = partial(log_lines.LocalLogs(deployment.logs_dir).new_lines, correlation_id, task_id)
    else:
        err_console.print(
            f"{deployment.origin} says nowhere where the logs are: pass --endpoints (a local cloud) or --stack",
            style="red",
            markup=False,
        )
        raise typer.Exit(EXIT_FAILED)
    console.print(f"Task {task_id} · correlation id {correlation_id or '(none: submitted before they existed)'}",
                  markup=False, highlight=False)
    lines: Iterable[log_lines.LogLine] = (
        log_lines.follow(read, lambda: progress_view.is_terminal(snapshot())) if follow else read()
    )
    try:
        for line in lines:
            console.print(line.render(), markup=False, highlight=False, soft_wrap=True)
    except KeyboardInterrupt:
        return


def register(app: typer.Typer) -> None:
    app.command("submit")(submit)
    app.command("status")(status)
    app.command("cancel")(cancel)
    app.command("logs")(logs)
    app.command("tasks")(list_tasks)
    app.command("pipelines")(list_pipelines)
