"""What a person sees in a real browser: the Django admin's wallet and journal, Swagger's
"Authorize" + "Try it out", and ReDoc, all under the site's Content-Security-Policy (django-csp): the
`page` fixture fails any test whose pages reported a CSP violation. Screenshots of every step go to
artifacts/browser/ (not in git).

Run on its own: make test ARGS="-m browser"
"""

import re
from decimal import Decimal

import pytest

from accounts.tests.factories import DEFAULT_PASSWORD
from wallet import services as ledger
from wallet.models import Transfer, Wallet

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


FUND = re.compile(r"\bfund", re.IGNORECASE)  # "Fund ...", "... (FUND)"; never "Defund"


def missing(what):
    """A piece of the contract another app has not delivered yet: fail, naming it."""
    pytest.fail(f"MISSING (not built yet): {what}")


def log_in_to_admin(page, live_server, user, shot):
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", DEFAULT_PASSWORD)
    shot("admin-login-form")
    page.click("input[type=submit]")
    page.wait_for_load_state()
    assert page.locator("#logout-form, a[href$='/admin/logout/']").count() > 0, "the admin login did not succeed"
    shot("admin-index")


def action_options(page):
    return {
        option.get_attribute("value"): option.inner_text().strip()
        for option in page.locator("select[name=action] option").all()
        if option.get_attribute("value")
    }


def test_an_admin_logs_in_to_the_django_admin(page, shot, live_server, admin_user, csp_violations):
    log_in_to_admin(page, live_server, admin_user, shot)
    assert page.title().startswith("Site administration")
    assert not csp_violations


def test_the_admin_lists_wallets_with_their_owner(page, shot, live_server, admin_user, distributor):
    log_in_to_admin(page, live_server, admin_user, shot)
    response = page.goto(f"{live_server.url}/admin/wallet/wallet/")
    if response.status == 404:
        missing("wallet admin: Wallet is not registered in the Django admin (wallet/admin.py)")
    assert response.status == 200
    shot("wallet-list")
    assert page.locator("#result_list").count() == 1
    assert distributor.username in page.locator("#result_list").inner_text()


def test_the_journal_can_be_read_but_never_added_changed_or_deleted(page, shot, live_server, admin_user, distributor):
    transfer = ledger.fund_wallet(user=distributor, amount="75.00", remarks="browser seed", initiated_by=admin_user)
    log_in_to_admin(page, live_server, admin_user, shot)

    response = page.goto(f"{live_server.url}/admin/wallet/transfer/")
    if response.status == 404:
        missing("wallet admin: Transfer (the journal) is not registered in the Django admin (wallet/admin.py)")
    assert response.status == 200
    shot("journal-list")
    assert page.locator("#result_list").count() == 1
    # #content: the admin's sidebar offers "Add" for other models; only this page's own tools count.
    assert page.locator("#content a.addlink").count() == 0, "the journal offers 'Add'"
    assert "delete_selected" not in action_options(page), "the journal offers 'Delete selected'"

    page.goto(f"{live_server.url}/admin/wallet/transfer/{transfer.pk}/change/")
    shot("journal-entry")
    assert page.locator("input[name=_save], input[name=_continue], input[name=_addanother]").count() == 0
    assert page.locator("a.deletelink").count() == 0, "a journal entry offers 'Delete'"

    assert page.goto(f"{live_server.url}/admin/wallet/transfer/add/").status == 403
    assert page.goto(f"{live_server.url}/admin/wallet/transfer/{transfer.pk}/delete/").status == 403
    shot("journal-delete-refused")


def test_funding_a_wallet_through_the_admin_action_changes_its_balance(
    page, shot, live_server, admin_user, distributor
):
    wallet = Wallet.objects.get(user=distributor)
    assert wallet.balance == Decimal("0.00")
    log_in_to_admin(page, live_server, admin_user, shot)

    response = page.goto(f"{live_server.url}/admin/wallet/wallet/?q={distributor.username}")
    if response.status == 404:
        missing("wallet admin: Wallet is not registered in the Django admin (wallet/admin.py)")
    fund_actions = [value for value, label in action_options(page).items() if FUND.search(label)]
    if not fund_actions:
        missing(f"wallet admin: no 'Fund' action on the Wallet list (actions: {action_options(page)})")

    page.check(f"input.action-select[value='{wallet.pk}']")
    page.select_option("select[name=action]", fund_actions[0])
    shot("fund-action-chosen")
    page.click("button[name=index]")
    page.wait_for_load_state()

    amount = page.locator("input[name$=amount]")
    if amount.count() == 0:
        missing("wallet admin: the 'Fund' action asks for no amount (expected an intermediate form)")
    operation = page.locator("select[name$=operation]")
    if operation.count():  # one form for funding and debiting: choose funding
        labels = operation.first.locator("option").all_inner_texts()
        operation.first.select_option(label=next(label for label in labels if FUND.search(label)))
    amount.first.fill("250.00")
    for name in ("remarks", "description"):
        field = page.locator(f"[name$={name}]")
        if field.count():
            field.first.fill("funded from the browser test")
    shot("fund-form-filled")
    page.locator("form", has=amount.first).locator("[type=submit]").first.click()
    page.wait_for_load_state()
    shot("fund-done")

    wallet.refresh_from_db()
    assert wallet.balance == Decimal("250.00")
    assert Transfer.objects.filter(kind=Transfer.Kind.FUND, amount=Decimal("250.00")).count() == 1

    page.goto(f"{live_server.url}/admin/wallet/wallet/?q={distributor.username}")
    shot("wallet-list-after-funding")
    assert "250.00" in page.locator("#result_list").inner_text()


def test_swagger_authorize_and_try_it_out_on_the_balance_endpoint(
    page, shot, live_server, admin_user, distributor, csp_violations
):
    # With DEBUG off the documentation is staff-only (API_DOCS_PUBLIC): the page is opened signed in
    # to the admin, and "Authorize" then calls the API with the distributor's token.
    log_in_to_admin(page, live_server, admin_user, shot)
    login = page.request.post(
        f"{live_server.url}/api/auth/login/email/", data={"email": distributor.email, "password": DEFAULT_PASSWORD}
    )
    if login.status == 404:
        missing("accounts: POST /api/auth/login/email/")
    assert login.status == 200, login.text()
    access = login.json()["access"]

    schema = page.request.get(f"{live_server.url}/swagger.json").json()
    base = schema.get("basePath", "/").rstrip("/")
    balance_paths = [path for path in schema["paths"] if base + path == "/api/wallet/balance/"]
    if not balance_paths:
        missing("wallet: GET /api/wallet/balance/ (not in /swagger.json)")

    page.goto(f"{live_server.url}/swagger/")
    page.wait_for_selector(".swagger-ui .opblock")
    shot("swagger-loaded")

    page.click("button.btn.authorize")
    page.fill(".auth-container input", f"Bearer {access}")
    shot("swagger-authorize-dialog")
    page.click(".auth-btn-wrapper button.authorize")
    page.click(".auth-btn-wrapper button.btn-done")

    operation = page.locator(f".opblock.opblock-get:has(.opblock-summary-path[data-path='{balance_paths[0]}'])").first
    operation.locator(".opblock-summary").first.click()
    operation.locator(".try-out__btn").click()
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for()
    shot("swagger-balance-executed", operation)
    assert status.inner_text().strip() == "200"
    assert '"balance"' in operation.locator(".live-responses-table").inner_text()
    assert f'"user": "{distributor.username}"' in operation.locator(".live-responses-table").inner_text()
    assert not csp_violations


def test_redoc_renders_every_tag_under_the_content_security_policy(page, shot, live_server, admin_user, csp_violations):
    log_in_to_admin(page, live_server, admin_user, shot)
    response = page.goto(f"{live_server.url}/redoc/")
    assert "Content-Security-Policy" in {name.title() for name in response.headers}
    page.wait_for_selector("redoc .api-content h1")
    page.wait_for_selector("redoc [data-section-id^='operation/']")
    shot("redoc-loaded", full_page=False)  # the whole ReDoc page is too long to capture
    menu = page.locator("redoc .menu-content").inner_text().lower()
    assert {"wallet", "purchases", "plans"} <= set(menu.split()), menu[:500]
    # ReDoc's search runs in its blob: worker: a search that finds the balance endpoint proves it ran.
    page.fill("redoc input.search-input", "balance")
    results = page.locator("redoc [data-role='search:results'] li")
    results.first.wait_for()
    assert "GET\nwallet_balance" in results.all_inner_texts()
    shot("redoc-search", full_page=False)
    assert not csp_violations


def test_the_documentation_sends_an_anonymous_visitor_to_the_admin_login(page, shot, live_server, settings):
    settings.API_DOCS_PUBLIC = False
    for url in ("/swagger/", "/redoc/", "/swagger.json"):
        page.goto(f"{live_server.url}{url}")
        assert page.url.startswith(f"{live_server.url}/admin/login/"), (url, page.url)
    shot("docs-login-required")


def test_with_api_docs_public_anyone_reads_swagger_ui(page, shot, live_server, settings, csp_violations):
    settings.API_DOCS_PUBLIC = True
    page.goto(f"{live_server.url}/swagger/")
    page.wait_for_selector(".swagger-ui .opblock")
    shot("swagger-public")
    assert page.locator(".swagger-ui .opblock").count() > 20
    assert not csp_violations


def test_the_policy_is_on_in_the_browser_an_injected_inline_script_does_not_run(
    page, live_server, admin_user, shot, csp_violations
):
    """What the policy is for: a script smuggled into a page (here injected inline) never runs, and
    the violation reaches the console, where the other tests look for it."""
    log_in_to_admin(page, live_server, admin_user, shot)
    page.evaluate(
        """() => { const s = document.createElement("script");
                   s.textContent = "window.injected = true"; document.body.appendChild(s); }"""
    )
    page.wait_for_timeout(200)
    assert page.evaluate("() => window.injected === undefined")
    assert any("script-src" in text for text in csp_violations), csp_violations
    csp_violations.clear()  # expected here; the fixture fails any test that leaves one
