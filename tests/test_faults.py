"""Faults on a real server (gunicorn + PostgreSQL): the database connection killed under load, and
a wallet locked for longer than the request may wait. Money is never lost or moved twice, and the
caller always gets an answer with a `code`, never a 500."""

import os
import threading
import time
import uuid
from decimal import Decimal

import psycopg2
import pytest

from tests.live import LiveStack

pytestmark = pytest.mark.postgres

# outcome_unknown: the connection died at COMMIT; a retry with the same key tells what happened.
RETRYABLE = {"database_unavailable", "try_again", "outcome_unknown"}


@pytest.fixture(scope="module")
def live():
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    stack = LiveStack(
        os.environ["DATABASE_URL"], name_suffix="faults", extra_env={"RECHARGE_GATEWAY_LATENCY_MS": "150"}
    )
    stack.start()
    yield stack
    stack.stop()


def _transfer(live, amount="1.00", key=None):
    return live.request(
        "POST",
        "/api/wallet/transfer/",
        {"to_phone_number": live.seed["phones"]["retailer"], "amount": amount, "remarks": "fault stream"},
        token=live.seed["tokens"]["distributor"],
        headers={"Idempotency-Key": key or uuid.uuid4().hex},
    )


def _purchase(live, key=None):
    return live.request(
        "POST",
        "/api/purchases/purchase/",
        {"plan_id": live.seed["ids"]["plan"], "mobile_number": "9876512345"},
        token=live.seed["tokens"]["retailer"],
        headers={"Idempotency-Key": key or uuid.uuid4().hex},
    )


def _purchases_by_key(live, keys):
    """{key: purchase id} of the purchases that exist for `keys`, read straight from the database."""
    dsn = {k: v for k, v in live.admin_dsn.items() if v is not None} | {"dbname": live.database}
    with psycopg2.connect(**dsn) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT idempotency_key, id FROM purchases_purchase WHERE idempotency_key = ANY(%s)", [keys])
        return dict(cursor.fetchall())


def _assert_ledger_clean(live):
    result = live.manage("verify_ledger", check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_killed_backends_fail_cleanly_and_the_next_requests_succeed(live):
    outcomes = []
    stop = threading.Event()

    purchase_answers = {}  # key -> (status, code)

    def stream():
        index = 0
        while not stop.is_set() and index < 400:
            if index % 2:
                key = uuid.uuid4().hex
                status, body, _ = _purchase(live, key)
                purchase_answers[key] = (status, (body or {}).get("code"))
            else:
                status, body, _ = _transfer(live)
            outcomes.append((status, (body or {}).get("code")))
            index += 1

    worker = threading.Thread(target=stream)
    worker.start()
    kills = 0
    deadline = time.monotonic() + 60
    # Keep killing until requests, purchases among them, have been caught mid-flight (or the minute is up).
    while time.monotonic() < deadline and sum(status >= 500 for status, _ in list(purchase_answers.values())) < 3:
        time.sleep(0.07)
        kills += live.terminate_backends()
    stop.set()
    worker.join(timeout=120)

    assert kills > 0
    caught = [(status, code) for status, code in outcomes if status >= 500]
    assert caught, "no request was caught by a killed backend; the test proved nothing"
    assert all(status == 503 and code in RETRYABLE for status, code in caught), caught
    assert all(status in (200, 201, 202, 503) for status, _ in outcomes), outcomes

    # 12.2: an error answer never says "nothing was changed" for a purchase that exists (its hold
    # committed), and a retry with the same key answers that purchase.
    refused = [key for key, (status, _) in purchase_answers.items() if status >= 500]
    existing = _purchases_by_key(live, refused)
    lies = [(key, purchase_answers[key]) for key in existing if purchase_answers[key][1] == "database_unavailable"]
    assert not lies, lies
    for key in refused:
        status, body, _ = _purchase(live, key)
        assert status == 202, (key, status, body)
        if key in existing:
            assert body["purchase"]["id"] == existing[key], (key, body)

    after = [_transfer(live)[0] for _ in range(3)] + [_purchase(live)[0] for _ in range(3)]
    assert all(status in (200, 201, 202) for status in after), after

    # A purchase caught after its hold committed stays PENDING with the money held; the settler
    # finishes it. The ledger balances before and after.
    _assert_ledger_clean(live)
    live.manage("settle_pending_purchases", "--older-than", "0")
    _assert_ledger_clean(live)


def test_transfer_waiting_too_long_on_a_locked_wallet_is_refused_with_try_again(live):
    dsn = {k: v for k, v in live.admin_dsn.items() if v is not None} | {"dbname": live.database}
    blocker = psycopg2.connect(**dsn)
    try:
        with blocker.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM wallet_transfer")
            journal_before = cursor.fetchone()[0]
            cursor.execute("SELECT balance FROM wallet_wallet WHERE user_id = %s", [live.seed["ids"]["distributor"]])
            balance_before = cursor.fetchone()[0]
            # Hold the receiver's wallet as a long transaction would.
            cursor.execute("SELECT id FROM wallet_wallet WHERE user_id = %s FOR UPDATE", [live.seed["ids"]["retailer"]])
            started = time.monotonic()
            status, body, headers = _transfer(live, amount="2.00")
            waited = time.monotonic() - started
        blocker.rollback()
        assert status == 503, body
        assert body["code"] == "try_again"
        assert headers.get("Retry-After")
        assert waited >= 1.5  # it waited for DB_LOCK_TIMEOUT_MS (2 s) before giving up

        with blocker.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM wallet_transfer")
            assert cursor.fetchone()[0] == journal_before
            cursor.execute("SELECT balance FROM wallet_wallet WHERE user_id = %s", [live.seed["ids"]["distributor"]])
            assert cursor.fetchone()[0] == balance_before
        blocker.rollback()
    finally:
        blocker.close()

    assert _transfer(live)[0] == 201  # the lock is gone: the same request now goes through
    _assert_ledger_clean(live)


def _available(live, role):
    status, body, _ = live.request("GET", "/api/wallet/balance/", token=live.seed["tokens"][role])
    assert status == 200, body
    return Decimal(body["available"]), Decimal(body["balance"])


def test_gateway_that_raises_or_times_out_never_loses_money_and_the_settler_finishes(live):
    from purchases.gateways import SandboxGateway

    price = Decimal("19.00")
    live.manage("settle_pending_purchases", "--older-than", "0")  # nothing left over from other tests
    available_before, balance_before = _available(live, "retailer")

    def buy(number):
        status, body, _ = live.request(
            "POST",
            "/api/purchases/purchase/",
            {"plan_id": live.seed["ids"]["plan"], "mobile_number": number},
            token=live.seed["tokens"]["retailer"],
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        assert status == 202, body
        return body["purchase"]

    # Not sent at all: failed at once, the hold released.
    assert buy(SandboxGateway.UNAVAILABLE)["status"] == "FAILED"
    assert _available(live, "retailer") == (available_before, balance_before)

    # Timed out: the outcome is unknown, so the money stays held (not spent, not returned).
    succeeds_later, fails_later = buy(SandboxGateway.TIMEOUT_THEN_SUCCESS), buy(SandboxGateway.TIMEOUT_THEN_FAILS)
    assert succeeds_later["status"] == fails_later["status"] == "PENDING"
    assert _available(live, "retailer") == (available_before - 2 * price, balance_before)
    _assert_ledger_clean(live)

    settled = live.manage("settle_pending_purchases", "--older-than", "0")
    assert settled.returncode == 0, settled.stderr

    statuses = {
        purchase["id"]: live.request("GET", f"/api/purchases/{purchase['id']}/", token=live.seed["tokens"]["retailer"])[
            1
        ]
        for purchase in (succeeds_later, fails_later)
    }
    assert statuses[succeeds_later["id"]]["status"] == "SUCCESS"
    assert statuses[fails_later["id"]]["status"] == "FAILED"
    commission = Decimal(statuses[succeeds_later["id"]]["buyer_commission"])
    # One recharge paid (less the retailer's own margin); the other's hold given back.
    assert _available(live, "retailer") == (available_before - price + commission,) * 2
    _assert_ledger_clean(live)
