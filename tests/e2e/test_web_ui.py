"""The web UI in a real browser (headless Chromium, Playwright) against a real ``hodei up``:
create a job through the form, watch its logs live and filter them, cancel a running job, see
that a job's image was not applied, disable and enable a provider, and open every page at phone
and desktop width, writing a screenshot of each (``docs/screenshots``, or
``HODEI_SCREENSHOT_DIR``)."""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any

import pytest
from conftest import DESKTOP, PHONE, SCREENSHOTS, UI_TIMEOUT_MS, HodeiUp
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.e2e


def base(hodei: HodeiUp) -> str:
    return f"http://127.0.0.1:{hodei.http_port}"


def api(hodei: HodeiUp, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base(hodei) + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
    return json.loads(text) if text else None


def submit(hodei: HodeiUp, name: str, script: str, image: str = "") -> str:
    body = {"name": name, "script": script} | ({"image": image} if image else {})
    job_id: str = api(hodei, "POST", "/api/v1/jobs", body)["job_id"]
    return job_id


def screenshot(page: Page, name: str, width_name: str) -> None:
    """Check that the page fits the screen's width, and write ``NAME-WIDTH_NAME.png``."""
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1, f"{page.url} is {overflow}px wider than a {width_name} screen"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # A phone screenshot shows the screen (its navigation bar is fixed to the bottom).
    shot = SCREENSHOTS / f"{name}-{width_name}.png"
    page.screenshot(path=str(shot), full_page=width_name == "desktop")


def test_a_job_created_through_the_form_runs_and_its_page_shows_it(
    hodei: HodeiUp, page: Page
) -> None:
    page.goto(base(hodei) + "/")
    page.get_by_label("New job").click()
    expect(page).to_have_url(base(hodei) + "/jobs/new")

    # Client-side validation: nothing is sent while the name is empty.
    page.get_by_role("button", name="Schedule Job").click()
    expect(page.locator("[id='error-name']")).to_be_visible()
    expect(page).to_have_url(base(hodei) + "/jobs/new")

    page.get_by_label("Job Name").fill("From the browser")
    page.get_by_label("Command Type").select_option("SHELL")
    page.get_by_label("Command / Script Content").fill('echo "hello from the form: $GREETING"')
    page.get_by_role("button", name="Add variable").click()
    page.get_by_label("Variable name").last.fill("GREETING")
    page.get_by_label("Variable value").last.fill("hi")
    page.get_by_label("CPU Cores").fill("1")
    page.get_by_label("Job Priority").select_option(label="High")
    page.get_by_role("button", name="Schedule Job").click()

    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
    job_id = page.url.rsplit("/", 1)[-1]
    expect(page.get_by_role("heading", name="From the browser")).to_be_visible()
    expect(page.get_by_test_id("job-state")).to_have_text("SUCCEEDED")
    job = api(hodei, "GET", f"/api/v1/jobs/{job_id}")
    assert job["definition"]["preferences"]["priority"] == "HIGH"
    assert job["definition"]["env"] == {"GREETING": "hi"}
    expect(page.get_by_test_id("timeline")).to_contain_text("Running")
    page.get_by_role("tab", name="Config").click()
    expect(page.get_by_text('echo "hello from the form: $GREETING"')).to_be_visible()
    page.get_by_role("tab", name="Overview").click()
    expect(page.get_by_text("hello from the form: hi")).to_be_visible()


def test_a_server_side_field_error_is_shown_next_to_its_field(hodei: HodeiUp, page: Page) -> None:
    page.goto(base(hodei) + "/jobs/new")
    page.get_by_label("Job Name").fill("bad region")
    page.get_by_label("Command / Script Content").fill("true")
    # Only the server knows this rule (a region is lowercase letters, digits and '-'): offer a
    # region the form would never list, the way a stale page or a hand-edited one could.
    page.get_by_label("Region").evaluate("select => select.add(new Option('EU West', 'EU West'))")
    page.get_by_label("Region").select_option("EU West")
    with page.expect_response("**/api/v1/jobs") as answer:
        page.get_by_role("button", name="Schedule Job").click()
    assert answer.value.status == 422
    error = page.locator("[id='error-preferences.region']")
    expect(error).to_contain_text("lowercase letters, digits and '-'")
    expect(page.get_by_label("Region")).to_have_attribute("aria-invalid", "true")
    expect(page).to_have_url(base(hodei) + "/jobs/new")


def test_logs_arrive_live_and_filter_by_level_and_text(hodei: HodeiUp, page: Page) -> None:
    script = (
        "for i in $(seq 1 30); do "
        'echo "step $i"; '
        '[ $((i % 10)) -eq 0 ] && echo "WARNING: checkpoint $i"; '
        '[ $i -eq 25 ] && echo "ERROR: needle in the log"; '
        "sleep 0.1; done"
    )
    job_id = submit(hodei, "live logs", script)
    page.goto(f"{base(hodei)}/jobs/{job_id}/logs")
    lines = page.get_by_test_id("log-line")
    expect(lines.first).to_be_visible()
    expect(page.get_by_test_id("log-status")).to_contain_text("ended")
    expect(page.locator("[data-testid='log-line'][data-sequence='34']")).to_be_attached()

    page.get_by_label("Level").select_option("WARN")
    expect(lines).to_have_count(3)
    for level in lines.evaluate_all("rows => rows.map(r => r.dataset.level)"):
        assert level == "WARN"
    page.get_by_label("Level").select_option("All")
    page.get_by_label("Search logs").fill("needle")
    expect(lines).to_have_count(1)
    expect(lines.first).to_have_attribute("data-level", "ERROR")
    expect(page.get_by_test_id("log-count")).to_contain_text("1 of 34")


def test_the_log_viewer_streams_while_the_job_runs(hodei: HodeiUp, page: Page) -> None:
    job_id = submit(
        hodei, "slow printer", 'for i in $(seq 1 40); do echo "tick $i"; sleep 0.2; done'
    )
    page.goto(f"{base(hodei)}/jobs/{job_id}/logs")
    expect(page.get_by_test_id("log-status")).to_contain_text("live")
    lines = page.get_by_test_id("log-line")
    expect(lines.first).to_be_visible()
    seen_while_running = lines.count()
    assert api(hodei, "GET", f"/api/v1/jobs/{job_id}")["state"] == "RUNNING"
    assert 0 < seen_while_running < 40
    expect(page.locator("[data-testid='log-line'][data-sequence='40']")).to_be_attached()
    expect(page.get_by_test_id("log-status")).to_contain_text("ended")


def test_a_running_job_is_cancelled_from_its_page(hodei: HodeiUp, page: Page) -> None:
    job_id = submit(hodei, "to cancel", "echo started; sleep 120")
    page.goto(f"{base(hodei)}/jobs/{job_id}")
    expect(page.get_by_test_id("job-state")).to_have_text("RUNNING")
    page.get_by_role("button", name="Cancel Job").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel job").click()
    expect(page.get_by_test_id("job-state")).to_have_text("CANCELLED")
    expect(page.get_by_role("button", name="Cancel Job")).to_have_count(0)
    assert api(hodei, "GET", f"/api/v1/jobs/{job_id}")["state"] == "CANCELLED"


def test_a_job_whose_image_was_not_applied_says_so_on_its_page(hodei: HodeiUp, page: Page) -> None:
    # This instance has no container provider (and no Docker engine): the job runs on the host.
    providers = api(hodei, "GET", "/api/v1/providers")
    docker = [p["name"] for p in providers if p["type"] == "docker" and p["enabled"]]
    assert not docker, f"enabled docker providers: {docker}"
    job_id = submit(hodei, "image on the host", "echo hi", image="alpine:latest")
    page.goto(f"{base(hodei)}/jobs/{job_id}")
    expect(page.get_by_test_id("job-state")).to_have_text("SUCCEEDED")

    notice = page.get_by_test_id("job-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("image alpine:latest was not applied")
    image_step = page.get_by_test_id("timeline").locator("[data-step='image']")
    expect(image_step).to_have_attribute("data-status", "warning")
    expect(image_step).to_contain_text("not applied: ran on the host")
    assert "was not applied" in api(hodei, "GET", f"/api/v1/jobs/{job_id}")["notice"]

    screenshot(page, "job-image-not-applied", "desktop")
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    expect(notice).to_be_in_viewport()
    screenshot(page, "job-image-not-applied", "phone")


def test_a_provider_is_disabled_and_enabled_from_the_providers_page(
    hodei: HodeiUp, page: Page
) -> None:
    api(
        hodei,
        "POST",
        "/api/v1/providers",
        {"name": "ui-docker", "type": "docker", "enabled": True, "max_workers": 2},
    )
    try:
        page.goto(base(hodei) + "/providers")
        row = page.locator("[data-testid='provider-row'][data-provider='ui-docker']")
        row.get_by_role("button", name="Disable").click()
        expect(row.get_by_role("button", name="Enable")).to_be_visible()
        assert api(hodei, "GET", "/api/v1/providers/ui-docker")["status"] == "DISABLED"
        row.get_by_role("button", name="Enable").click()
        expect(row.get_by_role("button", name="Disable")).to_be_visible()
        assert api(hodei, "GET", "/api/v1/providers/ui-docker")["status"] == "ACTIVE"
    finally:
        # The shared instance has no Docker engine: an enabled docker provider would claim the
        # jobs with an image that later tests expect to run on the host.
        api(hodei, "DELETE", "/api/v1/providers/ui-docker")


PAGES = [
    ("dashboard", "/"),
    ("new-job", "/jobs/new"),
    ("history", "/jobs"),
    ("job", "/jobs/{job}"),
    ("job-resources", "/jobs/{job}?tab=resources"),
    ("logs", "/jobs/{job}/logs"),
    ("providers", "/providers"),
    ("provider", "/providers/local"),
    ("new-provider", "/providers/new"),
    ("metrics", "/metrics"),
]


@pytest.mark.timeout(240)
@pytest.mark.parametrize(("width_name", "viewport"), [("phone", PHONE), ("desktop", DESKTOP)])
def test_every_page_works_at_phone_and_desktop_width(
    hodei: HodeiUp, browser: Browser, width_name: str, viewport: dict[str, int]
) -> None:
    job_id = submit(
        hodei,
        "screenshot job",
        'for i in $(seq 1 20); do echo "INFO line $i"; done; echo "WARN almost"; '
        'echo "ERROR example" >&2; end=$(( $(date +%s) + 2 )); '
        "while [ $(date +%s) -lt $end ]; do :; done",
    )
    context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{base(hodei)}/jobs/{job_id}")
        expect(page.get_by_test_id("job-state")).to_have_text("SUCCEEDED", timeout=30_000)
        for name, path in PAGES:
            page.goto(base(hodei) + path.format(job=job_id))
            page.wait_for_load_state("networkidle")
            main = page.get_by_role("main")
            expect(main).to_be_visible()
            expect(page.get_by_role("alert").filter(has_text="Could not load")).to_have_count(0)
            screenshot(page, name, width_name)
            # Every control is reachable by keyboard: Tab moves focus somewhere visible.
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement !== document.body"), path
    finally:
        context.close()
    assert not errors, f"JavaScript errors: {errors}"
