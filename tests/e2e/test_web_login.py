"""Logging in to the web UI in a real browser (headless Chromium, Playwright) against a real
``hodei up`` that is not in dev mode: the login page comes first and says why a token is refused;
each role sees only the actions it may take; the session cookie is HttpOnly and SameSite=Strict,
and a change it authenticates needs the CSRF token; logging out returns to the login page.
Writes screenshots of the login page at phone and desktop width."""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import GRPCURL, HODEI, PHONE, SCREENSHOTS, HodeiUp, new_data_dir, product_env, run
from playwright.sync_api import Page, expect
from test_web_ui import base, screenshot

pytestmark = pytest.mark.e2e


@dataclass
class SecuredHodeiUp(HodeiUp):
    """A ``hodei up`` that asks for tokens: its readiness check uses an admin token, made as
    soon as its database answers."""

    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, role: str) -> str:
        """A token with ``role`` (``hodei token create``), made once per role."""
        if role not in self.tokens:
            result = run(
                [
                    HODEI,
                    "token",
                    "create",
                    *("--data-dir", str(self.data_dir)),
                    *("--name", f"e2e-{role}"),
                    *("--role", role),
                ]
            )
            assert result.returncode == 0, result.stderr
            self.tokens[role] = result.stdout.strip().splitlines()[-1]
        return self.tokens[role]

    def ready_workers(self) -> int:
        result = run(
            [
                GRPCURL,
                "-plaintext",
                *("-H", f"authorization: Bearer {self.token('admin')}"),
                self.address,
                "hodei.v1.SchedulerService/ListWorkers",
            ],
            timeout=30,
        )
        if result.returncode != 0:
            return 0
        workers = json.loads(result.stdout).get("workers", [])
        return sum(1 for worker in workers if worker.get("state") == "WORKER_READY")


@pytest.fixture(scope="module")
def secured() -> Iterator[SecuredHodeiUp]:
    """One ``hodei up`` with HODEI_DEV_MODE=0, and its admin, operator and viewer tokens."""
    instance = SecuredHodeiUp(new_data_dir(), env=product_env(HODEI_DEV_MODE="0"))
    try:
        instance.start()
        for role in ("admin", "operator", "viewer"):
            instance.token(role)
        yield instance
        report = instance.stop()
        assert report.exit_code == 0, f"hodei up exited with {report.exit_code} on Ctrl-C"
    finally:
        instance.kill()
        shutil.rmtree(instance.data_dir, ignore_errors=True)


def api(hodei: SecuredHodeiUp, method: str, path: str, body: object = None) -> Any:
    """The JSON answer of an API call as the admin (a bearer token, no cookie)."""
    request = urllib.request.Request(
        base(hodei) + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={
            "Authorization": f"Bearer {hodei.token('admin')}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
    return json.loads(text) if text else None


def log_in(page: Page, hodei: SecuredHodeiUp, role: str) -> None:
    """Fill in the login page that is showing with the token of ``role``."""
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("API token").fill(hodei.token(role))
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("account")).to_contain_text(f"e2e-{role}")
    expect(page.get_by_test_id("account")).to_contain_text(role)


def test_the_login_page_comes_first_and_says_why_a_token_is_refused(
    secured: SecuredHodeiUp, page: Page
) -> None:
    page.goto(base(secured) + "/")
    expect(page).to_have_url(base(secured) + "/login")
    token = page.get_by_label("API token")
    expect(token).to_have_attribute("type", "password")
    expect(page.get_by_role("navigation", name="Main")).to_have_count(0)
    screenshot(page, "login", "desktop")
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    screenshot(page, "login", "phone")

    token.fill("hodei_not-a-real-token")
    with page.expect_response("**/api/v1/session") as answer:
        page.get_by_role("button", name="Log in").click()
    assert answer.value.status == 401
    expect(page.get_by_role("alert")).to_have_text("Login refused: unknown token")
    expect(token).to_have_attribute("aria-invalid", "true")
    expect(page).to_have_url(base(secured) + "/login")


def test_a_viewer_sees_no_new_job_and_no_cancel(secured: SecuredHodeiUp, page: Page) -> None:
    job_id = api(secured, "POST", "/api/v1/jobs", {"name": "watched", "script": "sleep 120"})[
        "job_id"
    ]
    try:
        page.goto(f"{base(secured)}/jobs/{job_id}")
        expect(page).to_have_url(re.compile(r"/login\?next="))
        log_in(page, secured, "viewer")
        # Back where the viewer was going.
        expect(page).to_have_url(f"{base(secured)}/jobs/{job_id}")
        expect(page.get_by_test_id("job-state")).to_have_text("RUNNING")
        expect(page.get_by_role("button", name="Cancel Job")).to_have_count(0)
        expect(page.get_by_role("link", name="New Job")).to_have_count(0)
        page.goto(base(secured) + "/")
        expect(page.get_by_role("link", name="Jobs", exact=True)).to_be_visible()
        expect(page.get_by_label("New job")).to_have_count(0)
        page.goto(base(secured) + "/jobs/new")
        expect(page.get_by_role("alert")).to_contain_text("Your role (viewer) may not submit jobs")
    finally:
        api(secured, "POST", f"/api/v1/jobs/{job_id}/cancel")


def test_an_operator_submits_a_job_but_has_no_provider_actions(
    secured: SecuredHodeiUp, page: Page
) -> None:
    page.goto(base(secured) + "/jobs/new")
    log_in(page, secured, "operator")
    expect(page).to_have_url(base(secured) + "/jobs/new")
    page.get_by_label("Job Name").fill("from an operator")
    page.get_by_label("Command / Script Content").fill("echo operated")
    page.get_by_role("button", name="Schedule Job").click()
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
    expect(page.get_by_test_id("job-state")).to_have_text("SUCCEEDED")
    job = api(secured, "GET", "/api/v1/jobs/" + page.url.rsplit("/", 1)[-1])
    assert job["definition"]["name"] == "from an operator"
    # The log viewer's WebSocket is authenticated by the session cookie too.
    page.goto(f"{base(secured)}/jobs/{job['id']}/logs")
    expect(page.get_by_test_id("log-line").first).to_contain_text("operated")
    expect(page.get_by_test_id("log-status")).to_contain_text("ended")

    page.goto(base(secured) + "/providers")
    row = page.locator("[data-testid='provider-row'][data-provider='local']")
    expect(row).to_be_visible()
    expect(page.get_by_role("link", name="Add provider")).to_have_count(0)
    expect(page.get_by_role("button")).to_have_count(1)  # Log out
    page.goto(base(secured) + "/providers/local")
    expect(page.get_by_role("heading", name="local", exact=True)).to_be_visible()
    for action in ("Disable", "Enable", "Delete"):
        expect(page.get_by_role("button", name=action, exact=True)).to_have_count(0)
    expect(page.get_by_role("heading", name="Edit")).to_have_count(0)


def test_an_admin_sees_provider_actions_and_logs_out(secured: SecuredHodeiUp, page: Page) -> None:
    page.goto(base(secured) + "/providers")
    log_in(page, secured, "admin")
    expect(page).to_have_url(base(secured) + "/providers")
    expect(page.get_by_role("link", name="Add provider")).to_be_visible()
    row = page.locator("[data-testid='provider-row'][data-provider='local']")
    expect(row.get_by_role("button", name="Disable")).to_be_visible()
    page.goto(base(secured) + "/providers/local")
    expect(page.get_by_role("button", name="Delete", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="Edit")).to_be_visible()
    expect(page.get_by_role("link", name="New Job")).to_be_visible()
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    account = page.get_by_test_id("account")
    expect(account).to_be_in_viewport()
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1, f"the top bar with the account is {overflow}px wider than a phone"
    page.screenshot(path=str(SCREENSHOTS / "login-account-phone.png"))

    account.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/login"))
    assert not page.context.cookies()
    page.goto(base(secured) + "/jobs")
    expect(page).to_have_url(base(secured) + "/login?next=%2Fjobs")


def test_the_session_cookie_is_http_only_and_a_change_needs_the_csrf_token(
    secured: SecuredHodeiUp, page: Page
) -> None:
    page.goto(base(secured) + "/")
    log_in(page, secured, "operator")
    cookies = {cookie["name"]: cookie for cookie in page.context.cookies()}
    session = cookies["hodei_session"]
    assert session.get("httpOnly") is True
    assert session.get("sameSite") == "Strict"
    assert session.get("secure") is False  # plain HTTP here
    csrf = cookies["hodei_csrf"]
    assert csrf.get("httpOnly") is False
    assert csrf.get("sameSite") == "Strict"

    job = {"name": "csrf", "script": "true"}
    post = """async ([body, csrf]) => {
        const headers = {"Content-Type": "application/json"};
        if (csrf) headers["X-CSRF-Token"] = csrf;
        const response = await fetch("/api/v1/jobs", {
            method: "POST", headers, body: JSON.stringify(body), credentials: "same-origin",
        });
        return [response.status, await response.json()];
    }"""
    status, answer = page.evaluate(post, [job, ""])
    assert (status, answer) == (403, {"detail": "missing or wrong CSRF token"})
    status, answer = page.evaluate(post, [job, "not-the-token"])
    assert status == 403
    status, answer = page.evaluate(post, [job, csrf["value"]])
    assert status == 201, answer

    refused = page.request.post(base(secured) + "/api/v1/jobs", data=job)
    assert refused.status == 403
    assert refused.json() == {"detail": "missing or wrong CSRF token"}
