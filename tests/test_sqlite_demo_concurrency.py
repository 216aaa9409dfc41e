"""The embedded default (SQLite) is safe for the few concurrent users of a demo: simultaneous money
requests are serialised by IMMEDIATE transactions and a busy timeout (config/settings.py), so none
fails with "database is locked" and none is lost. Runs on an SQLite file of its own whatever
DATABASE_URL says, against gunicorn with threads, as a demo would be served."""

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from tests.live import LiveStack


@pytest.fixture(scope="module")
def sqlite_stack():
    stack = LiveStack(
        "sqlite:///unused.sqlite3",
        name_suffix="sqlite-demo",
        workers=2,
        gunicorn_args=["--worker-class", "gthread", "--threads", "8"],
    )
    stack.start()
    yield stack
    stack.stop()


def test_simultaneous_money_requests_on_sqlite_are_serialised_not_refused(sqlite_stack):
    token = sqlite_stack.seed["tokens"]["client"]
    before = Decimal(sqlite_stack.request("GET", "/wallet/balance/", token=token)[1]["balance"])

    def credit(_):
        return sqlite_stack.request("POST", "/wallet/credit/", {"amount": "1.00"}, token=token)[0]

    def transfer(_):
        body = {"to_phone_number": sqlite_stack.seed["phones"]["retailer"], "amount": "0.50"}
        return sqlite_stack.request("POST", "/api/wallet/transfer/", body, token=token)[0]

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(credit, range(40))) + list(pool.map(transfer, range(40)))

    assert statuses == [201] * 80, sorted(set(statuses))
    after = Decimal(sqlite_stack.request("GET", "/wallet/balance/", token=token)[1]["balance"])
    assert after == before + Decimal("40.00") - Decimal("20.00")  # no lost update
    verified = sqlite_stack.manage("verify_ledger", check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_simultaneous_copies_of_a_keyed_transfer_on_sqlite_move_the_money_once(sqlite_stack):
    """A keyed wallet POST stores its answer in its own transaction (core.idempotency): on SQLite the
    copies are serialised by IMMEDIATE transactions, and every copy after the first finds the key
    taken, is rolled back and replays the first's answer."""
    token = sqlite_stack.seed["tokens"]["client"]
    before = Decimal(sqlite_stack.request("GET", "/wallet/balance/", token=token)[1]["balance"])
    body = {"to_phone_number": sqlite_stack.seed["phones"]["retailer"], "amount": "0.75"}

    def transfer(_):
        status, answer, headers = sqlite_stack.request(
            "POST", "/api/wallet/transfer/", body, token=token, headers={"Idempotency-Key": "sqlite-copies"}
        )
        return status, answer["transfer"]["id"] if status == 201 else answer, headers.get("Idempotent-Replayed")

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(transfer, range(12)))

    assert {(status, transfer_id) for status, transfer_id, _ in answers} == {(201, answers[0][1])}, answers
    assert sorted(replayed or "" for _, _, replayed in answers) == [""] + ["true"] * 11
    after = Decimal(sqlite_stack.request("GET", "/wallet/balance/", token=token)[1]["balance"])
    assert after == before - Decimal("0.75")
