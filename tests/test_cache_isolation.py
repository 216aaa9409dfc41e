"""Tests share no state through the cache (throttle counters, OTP cooldowns), with either backend.

CI runs the suite with REDIS_URL set, where the cache outlives each test; the root conftest's
autouse fixture clears it before every test.
"""

import os

from django.conf import settings
from django.core.cache import cache

SENTINEL = "tests:cache-isolation:sentinel"


def test_the_cache_backend_is_redis_when_redis_url_is_set():
    backend = settings.CACHES["default"]["BACKEND"]
    if os.environ.get("REDIS_URL"):
        assert backend == "django.core.cache.backends.redis.RedisCache"
        cache.set(SENTINEL + ":ping", "pong", 30)
        assert cache.get(SENTINEL + ":ping") == "pong"  # a real round trip to the server
    else:
        assert backend == "django.core.cache.backends.locmem.LocMemCache"


def test_the_autouse_fixture_clears_what_a_test_left_in_the_cache():
    import conftest

    cache.set(SENTINEL, "left behind", 300)
    # What pytest does between two tests: run the autouse fixture again.
    fixture = conftest._fresh_cache.__wrapped__()
    next(fixture)
    assert cache.get(SENTINEL) is None
