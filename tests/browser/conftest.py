"""Fixtures of the browser tests: Debian's Chromium driven by Playwright against live_server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Playwright's sync API runs an asyncio event loop in the test thread, so Django
# detects a running loop and raises SynchronousOnlyOperation on every ORM call the
# test or its fixtures make there. Those calls never run inside a coroutine, so
# turning the check off is safe here.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
# live_server listens on this address unless --liveserver sets another one.
os.environ.setdefault("DJANGO_LIVE_TEST_SERVER_ADDRESS", "127.0.0.1")

from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
PASSWORD = "correct-horse-battery"
# Milliseconds Playwright waits for an element or a navigation before failing.
TIMEOUT_MS = 10_000


@pytest.fixture(autouse=True)
def _groups_before_users(transactional_db, role_groups) -> None:
    """Recreate the role groups before any fixture creates a user.

    live_server makes every test transactional, and the flush after each test
    deletes the groups that the migrations created.
    """


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package.")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def context(browser: Browser, live_server) -> Iterator[BrowserContext]:
    context = browser.new_context(
        base_url=live_server.url,
        accept_downloads=True,
        viewport={"width": 1400, "height": 900},
        locale="en-GB",
        # postloan.js turns Chart.js animation off for reduced motion, so screenshots
        # show the finished bars instead of a frame of the animation.
        reduced_motion="reduce",
    )
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def screenshot(page: Page):
    """Return a function saving a full-page PNG of the page as test-artifacts/browser/NAME.png."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)

    def save(name: str) -> Path:
        path = SCREENSHOT_DIR / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save


@pytest.fixture
def log_in(page: Page):
    """Return a function signing a user in through the login form, as a person would."""

    def submit(username: str, password: str = PASSWORD) -> None:
        page.goto("/accounts/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state()

    return submit
