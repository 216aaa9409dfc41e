"""Headless Chromium from Debian's `chromium` package, driven by Playwright's sync API.

Never a downloaded browser (`playwright install` is not used). Without /usr/bin/chromium these
tests skip on a developer's machine and FAIL in CI (CI=true), where .ci/run installs it.
"""

import os
import re
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="module")
def chromium():
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} not found: install Debian's package (apt-get install chromium)"
        if IN_CI:
            pytest.fail("CI=true: " + message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, so Django refuses ORM calls
    # from the test body unless told they are safe (they are: the test itself is synchronous).
    # Module scope: the loop, and this permission, end with the browser tests.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


# Every page reports each Content-Security-Policy violation to the console, where the `page` fixture
# collects it (Chromium's own "Refused to ..." lines are not all console-API messages).
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI || "inline"}`
    + ` at ${event.sourceFile || event.documentURI}:${event.lineNumber}`);
});
"""


def _is_csp_violation(text):
    return text.startswith("CSP violation:") or "Content Security Policy" in text


@pytest.fixture
def csp_violations():
    """Every CSP violation the browser reported on this test's pages (the site sends the policy)."""
    return []


@pytest.fixture
def page(chromium, request, csp_violations):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    context.add_init_script(REPORT_CSP_VIOLATIONS)
    page = context.new_page()
    page.on("console", lambda message: _is_csp_violation(message.text) and csp_violations.append(message.text))
    yield page
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        try:
            page.screenshot(path=str(screenshot_path(request.node.name, "failure")), full_page=True)
        except Exception:  # noqa: BLE001 - a page too long to capture whole (ReDoc): the viewport
            page.screenshot(path=str(screenshot_path(request.node.name, "failure")))
    context.close()
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.passed:
        # Whatever a test did in the admin, Swagger UI or ReDoc: the policy must not have broken it.
        assert not csp_violations, f"the Content-Security-Policy blocked something: {csp_violations}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def screenshot_path(test_name, step):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', test_name)}--{step}.png"


@pytest.fixture
def shot(page, request):
    """shot("step-name"[, locator][, full_page=False]): a screenshot of the whole page (or of the
    viewport, or of one element) into artifacts/browser/."""

    def take(step, locator=None, full_page=True):
        path = str(screenshot_path(request.node.name, step))
        if locator is None:
            page.screenshot(path=path, full_page=full_page)
        else:
            locator.screenshot(path=path)

    return take
