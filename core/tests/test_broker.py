"""core/broker.py: kombu's Redis transport with one client per channel for its commands."""

import uuid

import pytest
from kombu import Connection

from core.broker import Transport
from tests.live import broker_for_tests


@pytest.fixture
def channel():
    url = broker_for_tests()
    if not url.startswith("redis"):
        pytest.skip("the test broker is not Redis")
    with Connection(url, transport=Transport) as connection:
        yield connection.default_channel


def test_a_channel_sends_its_commands_through_one_client(channel):
    # kombu built a new redis.Redis for each publish and each acknowledgement: about 70 us apiece.
    assert channel._create_client() is channel._create_client()
    assert channel._create_client() is not channel.client  # the consumer's own connection stays apart


def test_a_new_pool_gets_a_new_client(channel):
    before = channel._create_client()

    channel._disconnect_pools()  # after a fork, or a reconnection

    after = channel._create_client()
    assert after is not before and after.connection_pool is channel.pool


def test_messages_go_through_it_and_back(channel):
    queue = channel.connection.client.SimpleQueue(f"core-broker-test-{uuid.uuid4().hex}")
    try:
        for n in range(3):
            queue.put({"n": n})
        received = []
        for _ in range(3):
            message = queue.get(timeout=5)
            received.append(message.payload["n"])
            message.ack()
        assert received == [0, 1, 2]
    finally:
        queue.clear()
        queue.close()
