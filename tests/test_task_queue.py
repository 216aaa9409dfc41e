"""The task queue (config/celery.py): eager in-process with no broker, a real worker with one."""

import os
import threading
import time
from datetime import timedelta

import psycopg2
import pytest
from django.utils import timezone

from core import db_threads
from core.models import IdempotencyRecord
from tests.live import LiveStack, broker_for_tests
from tests.test_settings import run_python

_DUMP_CELERY = """
import json, threading, django
django.setup()
from config.celery import app
c = app.conf
in_a_thread = []
thread = threading.Thread(target=lambda: in_a_thread.append(app.backend))
thread.start(); thread.join()
print(json.dumps({"eager": c.task_always_eager, "broker": c.broker_url, "acks_late": c.task_acks_late,
                  "visibility": c.broker_transport_options.get("visibility_timeout"),
                  "consumed": sorted(app.amqp.queues),
                  "callbacks_to": app.amqp.router.route({}, "purchases.apply_operator_callback")["queue"].name,
                  "sends_to": app.amqp.router.route({}, "purchases.fulfil_purchase")["queue"].name,
                  "one_backend": in_a_thread[0] is app.backend,
                  "sandbox_callbacks": c.beat_schedule.get("sandbox-callbacks"),
                  "transport": app.connection_for_write().transport_cls if c.broker_url else None}))
"""


def celery_conf(**env):
    import json

    result = run_python(["-c", _DUMP_CELERY], DJANGO_SETTINGS_MODULE="config.settings", DEBUG="true", **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_without_a_broker_tasks_run_eagerly_in_the_enqueuing_process():
    conf = celery_conf()
    assert conf["eager"] is True


@pytest.mark.parametrize(
    ("url", "transport"),
    [
        ("redis://127.0.0.1:6379/1", "core.broker:Transport"),
        ("rediss://127.0.0.1:6380/1", "rediss"),  # kombu's own: its name is what turns TLS on
        ("amqp://guest:guest@127.0.0.1:5672//", "amqp"),
    ],
)
def test_a_broker_url_sends_tasks_to_workers_with_late_acknowledgement(url, transport):
    conf = celery_conf(CELERY_BROKER_URL=url)
    assert (conf["eager"], conf["broker"], conf["acks_late"], conf["transport"]) == (False, url, True, transport)


def test_operator_callbacks_are_settled_from_a_queue_of_their_own_that_every_worker_consumes():
    # Behind the busy hour's sends in one FIFO queue, a callback waited for every send queued before it.
    conf = celery_conf(CELERY_BROKER_URL="redis://127.0.0.1:6379/1", CELERY_QUEUE="shop")
    assert (conf["sends_to"], conf["callbacks_to"]) == ("shop", "shop.settle")
    assert conf["consumed"] == ["shop", "shop.settle"]  # a worker started without -Q takes both


def test_every_pool_thread_of_a_worker_shares_one_result_backend():
    # Built per thread, each by reading every installed package's entry points: a sixth of the busy
    # hour's worker CPU, with 256 threads.
    conf = celery_conf(CELERY_BROKER_URL="redis://127.0.0.1:6379/1")
    assert conf["one_backend"] is True


def test_beat_keeps_the_sandbox_operator_loop_running_only_in_callback_mode_on_its_queue_if_named():
    assert celery_conf(CELERY_BROKER_URL="redis://127.0.0.1:6379/1")["sandbox_callbacks"] is None
    callback_mode = {"CELERY_BROKER_URL": "redis://127.0.0.1:6379/1", "RECHARGE_SANDBOX_CALLBACK_URL": "http://x/cb/"}
    entry = celery_conf(**callback_mode)["sandbox_callbacks"]
    assert (entry["task"], entry["schedule"], entry["options"]) == (
        "purchases.deliver_sandbox_callbacks",
        1.0,
        {"expires": 5.0},  # the default queue: `make worker` sends them
    )
    entry = celery_conf(**callback_mode, RECHARGE_SANDBOX_CALLBACK_QUEUE="aggregator")["sandbox_callbacks"]
    assert entry["options"] == {"expires": 5.0, "queue": "aggregator"}


def test_the_visibility_timeout_outlasts_the_gateway_timeout():
    # A message redelivered while its task is still waiting on the operator would run it twice.
    conf = celery_conf(CELERY_BROKER_URL="redis://127.0.0.1:6379/1", RECHARGE_GATEWAY_TIMEOUT_SECONDS="45")
    assert conf["visibility"] > 45


@pytest.mark.django_db
def test_an_eager_task_runs_at_once_in_process(client_user):
    from core.tasks import purge_idempotency_keys

    old = IdempotencyRecord.objects.create(
        user=client_user, key="old", endpoint="e", fingerprint="f", locked_at=timezone.now()
    )
    IdempotencyRecord.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))

    purge_idempotency_keys.delay()

    assert not IdempotencyRecord.objects.exists()


def test_worker_database_work_runs_on_a_few_dedicated_threads():
    db_threads.enable(size=2)
    try:
        names, barrier = [], threading.Barrier(16)

        def call():
            barrier.wait()
            names.append(db_threads.run(lambda: threading.current_thread().name))

        threads = [threading.Thread(target=call) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        db_threads.disable()
    assert len(names) == 16
    assert all(name.startswith("db") for name in names)
    assert len(set(names)) <= 2
    assert db_threads.run(lambda: threading.current_thread().name) == threading.current_thread().name


def live_stack(name_suffix, **extra_env):
    """A LiveStack (gunicorn and a real Celery worker on the test broker) on this test's PostgreSQL
    server, not yet started."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    return LiveStack(
        os.environ["DATABASE_URL"], name_suffix=name_suffix, broker_url=broker_for_tests(), extra_env=extra_env
    )


def buy(stack, *, number, key):
    """The seeded retailer buys the seeded plan for `number`: the 202's purchase, with its Location."""
    status, body, headers = stack.request(
        "POST",
        "/api/purchases/purchase/",
        {"plan_id": stack.seed["ids"]["plan"], "mobile_number": number},
        token=stack.seed["tokens"]["retailer"],
        headers={"Idempotency-Key": key},
    )
    assert status == 202, body
    return {**body["purchase"], "location": headers["Location"]}


def poll_until_final(stack, purchase, *, seconds=30):
    """GET the purchase's Location until it is no longer PENDING (or `seconds` pass): as a client does."""
    deadline, polled = time.monotonic() + seconds, purchase
    while polled["status"] == "PENDING" and time.monotonic() < deadline:
        time.sleep(0.2)
        polled = stack.request("GET", purchase["location"], token=stack.seed["tokens"]["retailer"])[1]
    return polled


@pytest.mark.postgres
def test_a_real_worker_takes_a_task_from_the_broker_and_runs_it():
    stack = live_stack("queue")
    stack.start()
    try:
        dsn = {k: v for k, v in stack.admin_dsn.items() if v is not None} | {"dbname": stack.database}
        with psycopg2.connect(**dsn) as conn, conn.cursor() as cursor:
            cursor.execute(
                "INSERT INTO core_idempotencyrecord (user_id, key, endpoint, fingerprint, state, created_at,"
                " locked_at) VALUES (%s, 'old', 'e', 'f', 'COMPLETED', now() - interval '3 days', now())",
                [stack.seed["ids"]["client"]],
            )
        stack.manage("shell", "-c", "from core.tasks import purge_idempotency_keys; purge_idempotency_keys.delay()")

        deadline, left = time.monotonic() + 30, 1
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            with psycopg2.connect(**dsn) as conn, conn.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM core_idempotencyrecord")
                left = cursor.fetchone()[0]
        assert left == 0, stack.worker_output()
        assert "core.purge_idempotency_keys" in stack.worker_output()
    finally:
        stack.stop()


@pytest.mark.postgres
def test_a_purchase_is_accepted_at_once_and_a_real_worker_settles_it():
    stack = live_stack("fulfil", RECHARGE_GATEWAY_LATENCY_MS="6000")
    stack.start()
    try:
        started = time.monotonic()
        accepted = buy(stack, number="9876512345", key="live-fulfil-1")
        assert time.monotonic() - started < 6  # the operator's 6 s are not spent in the request
        assert accepted["status"] == "PENDING"

        polled = poll_until_final(stack, accepted)
        assert polled["status"] == "SUCCESS", stack.worker_output()
        assert polled["operator_reference"].startswith("SBX")
        assert "purchases.fulfil_purchase" in stack.worker_output()
        assert stack.manage("verify_ledger", check=False).returncode == 0
    finally:
        stack.stop()


@pytest.mark.postgres
def test_a_worker_killed_mid_call_is_redelivered_asks_the_status_and_never_recharges_twice():
    stack = live_stack(
        "killed",
        RECHARGE_GATEWAY_LATENCY_MS="6000",
        RECHARGE_GATEWAY_TIMEOUT_SECONDS="7",
        PURCHASE_STATUS_CHECK_AFTER_SECONDS="8",
        CELERY_VISIBILITY_TIMEOUT_SECONDS="10",
        CELERY_RESTORE_INTERVAL_SECONDS="2",
    )
    stack.start()
    dsn = {k: v for k, v in stack.admin_dsn.items() if v is not None} | {"dbname": stack.database}

    def rows(sql):
        with psycopg2.connect(**dsn) as conn, conn.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall()

    try:
        token = stack.seed["tokens"]["retailer"]
        for n in range(4):
            status, body, _ = stack.request(
                "POST",
                "/api/purchases/purchase/",
                {"plan_id": stack.seed["ids"]["plan"], "mobile_number": f"98765123{n:02d}"},
                token=token,
                headers={"Idempotency-Key": f"killed-{n}"},
            )
            assert status == 202, body
        # Killed once the operator has all four (the sandbox records a recharge on receipt, then takes
        # its 6 s): the calls are in flight, their outcome unknown to us. Killed as soon as they were
        # only marked sent, a loaded machine could kill one before it reached the operator, and that
        # purchase rightly ends FAILED ("never received"), as the busy-hour benchmark shows.
        deadline = time.monotonic() + 20
        while rows("SELECT count(*) FROM purchases_sandboxrecharge")[0][0] < 4:
            assert time.monotonic() < deadline, stack.worker_output()
            time.sleep(0.1)
        stack.kill_worker()
        assert rows("SELECT count(*) FROM purchases_purchase WHERE status = 'PENDING'")[0][0] > 0
        stack.start_worker()

        deadline = time.monotonic() + 90
        while rows("SELECT count(*) FROM purchases_purchase WHERE status = 'PENDING'")[0][0]:
            assert time.monotonic() < deadline, stack.worker_output()
            time.sleep(0.5)
        assert rows("SELECT status, count(*) FROM purchases_purchase GROUP BY status") == [("SUCCESS", 4)]
        # The operator's own record: each recharge received once, never again after the restart.
        assert rows("SELECT max(times_received), count(*) FROM purchases_sandboxrecharge") == [(1, 4)]
        assert stack.manage("verify_ledger", check=False).returncode == 0
    finally:
        stack.stop()


@pytest.mark.postgres
def test_in_callback_mode_the_callback_is_verified_in_the_request_and_settled_by_a_real_worker():
    stack = live_stack(
        "callback", RECHARGE_CALLBACK_SECRET="live-callback-secret-0123456789", RECHARGE_SANDBOX_CALLBACK_DELAY_MS="100"
    )
    stack.env["RECHARGE_SANDBOX_CALLBACK_URL"] = f"{stack.base_url}/api/purchases/callbacks/sandbox/"
    stack.worker_beat = True  # the scheduler keeps the sandbox's operator loop running
    stack.start()
    try:
        polled = poll_until_final(stack, buy(stack, number="9876512399", key="live-callback-1"))
        output = stack.worker_output()
        assert polled["status"] == "SUCCESS", output
        # The sandbox's callback reached the web tier (answered 2xx) and the worker applied it.
        assert "purchases.deliver_sandbox_callbacks" in output and "purchases.apply_operator_callback" in output
        assert stack.manage("verify_ledger", check=False).returncode == 0
    finally:
        stack.stop()
