"""Prometheus metrics: request latency (this middleware) and what each app reports at scrape time.

`GET /metrics` answers the Prometheus text format. Request latency is a histogram per method, route
(the URL pattern, never the raw path) and status class, observed by `RequestLatencyMiddleware`.
With several gunicorn workers, set PROMETHEUS_MULTIPROC_DIR (an empty directory, wiped at start):
prometheus-client then keeps each worker's samples in files there and a scrape sums them, whichever
worker answers it. The apps' own figures (purchases by status, pending holds, queue depth) are read
from the database and the broker by the collectors named in METRICS_COLLECTORS, at each scrape.

Protected: with METRICS_TOKEN set, a scrape must send `Authorization: Bearer <token>`; without one,
the endpoint is open only with DEBUG on (a development machine) and answers 404 in production.
"""

import hmac
import os
import time

from django.conf import settings
from django.http import Http404, HttpResponse
from django.utils.module_loading import import_string
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Histogram, generate_latest, multiprocess

REQUEST_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request, by method, route (URL pattern) and status class.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class RequestLatencyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None and match.route else "unmatched"
        REQUEST_LATENCY.labels(request.method, route, f"{response.status_code // 100}xx").observe(
            time.perf_counter() - started
        )
        return response


def metrics_view(request):
    _check_token(request)
    output = generate_latest(_process_registry())
    collectors = CollectorRegistry(auto_describe=False)
    for path in settings.METRICS_COLLECTORS:
        collectors.register(import_string(path)())
    output += generate_latest(collectors)
    return HttpResponse(output, content_type=CONTENT_TYPE_LATEST)


def _process_registry():
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def _check_token(request):
    token = settings.METRICS_TOKEN
    if not token:
        if settings.DEBUG:
            return
        raise Http404  # production without a token: no metrics endpoint at all
    sent = request.headers.get("Authorization", "")
    if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
        raise Http404
