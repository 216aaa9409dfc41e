"""GET /metrics: Prometheus figures, protected in production."""

import pytest
from amqp.exceptions import AccessRefused, NotFound
from django.test import Client
from kombu.exceptions import ChannelError

from purchases.models import Purchase
from purchases.services import purchase_recharge
from purchases.tests.helpers import fund

pytestmark = pytest.mark.django_db
TOKEN = "metrics-token-0123456789"


def _scrape(token=None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return Client().get("/metrics", **headers)


def test_in_production_without_a_token_there_is_no_metrics_endpoint(settings):
    settings.DEBUG, settings.METRICS_TOKEN = False, ""
    assert _scrape().status_code == 404


@pytest.mark.parametrize("sent", [None, "wrong-token", TOKEN + "x"])
def test_a_scrape_without_the_token_is_404(settings, sent):
    settings.METRICS_TOKEN = TOKEN
    assert _scrape(sent).status_code == 404


def test_a_scrape_with_the_token_shows_latency_purchases_by_status_and_pending_holds(settings, retailer):
    from plans.tests.factories import RechargePlanFactory
    from purchases.gateways import SandboxGateway

    settings.METRICS_TOKEN = TOKEN
    settings.RECHARGE_GATEWAY_LATENCY_MS = 0
    fund(retailer, "1000.00")
    plan = RechargePlanFactory()
    purchase_recharge(buyer=retailer, plan_id=plan.pk, mobile_number=SandboxGateway.PENDING_FOREVER)
    purchase_recharge(buyer=retailer, plan_id=plan.pk, mobile_number="9876543210")
    Client().get("/api/health/")

    response = _scrape(TOKEN)

    assert response.status_code == 200
    text = response.content.decode()
    assert 'http_request_duration_seconds_count{method="GET",route="api/health/",status="2xx"}' in text
    assert 'recharge_purchases{status="PENDING"} 1.0' in text
    assert 'recharge_purchases{status="SUCCESS"} 1.0' in text
    assert "wallet_pending_holds 1.0" in text
    assert f"wallet_pending_holds_amount {float(plan.amount)}" in text
    assert "recharge_oldest_pending_purchase_seconds" in text
    assert "recharge_queue_depth" not in text  # no broker: no queue
    assert Purchase.objects.count() == 2


def test_the_queue_depth_is_read_from_the_broker(settings):
    import redis

    from core.queue import queue_depth
    from tests.live import broker_for_tests

    url = broker_for_tests()
    settings.CELERY_BROKER_URL, settings.CELERY_TASK_DEFAULT_QUEUE = url, "metrics-test-queue"
    client = redis.Redis.from_url(url)
    client.delete("metrics-test-queue")
    client.lpush("metrics-test-queue", "a", "b", "c")
    try:
        assert queue_depth() == 3
    finally:
        client.delete("metrics-test-queue")


def test_a_scrape_shows_the_depth_of_the_send_queue_and_of_the_settle_queue(settings):
    import redis

    from tests.live import broker_for_tests

    url = broker_for_tests()
    settings.METRICS_TOKEN = TOKEN
    settings.CELERY_BROKER_URL = url
    settings.CELERY_TASK_DEFAULT_QUEUE, settings.CELERY_SETTLE_QUEUE = "metrics-sends", "metrics-sends.settle"
    client = redis.Redis.from_url(url)
    client.delete("metrics-sends", "metrics-sends.settle")
    client.lpush("metrics-sends", "a", "b", "c")
    client.lpush("metrics-sends.settle", "d")
    try:
        text = _scrape(TOKEN).content.decode()
    finally:
        client.delete("metrics-sends", "metrics-sends.settle")
    assert 'recharge_queue_depth{queue="metrics-sends"} 3.0' in text
    assert 'recharge_queue_depth{queue="metrics-sends.settle"} 1.0' in text


def test_an_empty_queue_is_zero_deep_and_no_warning(settings, caplog):
    # Redis deletes a list once it is empty: its passive declare answers 404, which means nothing waits.
    import redis

    from core.queue import queue_depth
    from tests.live import broker_for_tests

    url = broker_for_tests()
    settings.CELERY_BROKER_URL = url
    redis.Redis.from_url(url).delete("metrics-empty-queue")

    assert queue_depth("metrics-empty-queue") == 0
    assert not [record for record in caplog.records if record.levelname == "WARNING"]


@pytest.mark.parametrize(
    ("error", "missing"),
    [
        (NotFound("NOT_FOUND - no queue"), True),  # RabbitMQ
        (ChannelError("NOT_FOUND", (50, 10), "Channel.queue_declare", "404"), True),  # kombu's Redis
        (AccessRefused("ACCESS_REFUSED"), False),
    ],
)
def test_only_a_404_from_the_broker_means_no_such_queue(error, missing):
    from core.queue import _no_such_queue

    assert _no_such_queue(error) is missing


def test_an_unreachable_broker_leaves_the_queue_depth_out(settings):
    from core.queue import queue_depth

    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    assert queue_depth() is None
