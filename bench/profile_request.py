"""Where one request's CPU goes: the WSGI application called in-process, under cProfile.

    .venv/bin/python bench/profile_request.py transfer --requests 2000 --top 40

Recreates PROFILE_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/recharge_profile),
migrates it, seeds a handful of users through the services, then sends `--requests` requests
straight to `config.wsgi.application` (no HTTP server, no network), as the benchmark's clients
send them (Bearer token, Idempotency-Key on money). Prints the CPU time per request and the
functions that take it. The benchmark (`make bench`) measures throughput; this says why.
"""

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/recharge_profile"


def environ_for(*, method, path, token, body=None, key=None, query=""):
    payload = json.dumps(body).encode() if body is not None else b""
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "wsgi.input": io.BytesIO(payload),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    if body is not None:
        environ["CONTENT_TYPE"] = "application/json"
        environ["CONTENT_LENGTH"] = str(len(payload))
    if key is not None:
        environ["HTTP_IDEMPOTENCY_KEY"] = key
    return environ


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=["transfer", "credit", "balance", "purchase", "plans"])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"])
    parser.add_argument("--no-profile", action="store_true", help="only time the requests")
    args = parser.parse_args()

    from run import configure_environment, recreate_database

    database_url = os.environ.get("PROFILE_DATABASE_URL", DEFAULT_DB)
    configure_environment(database_url)
    recreate_database(database_url)

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from rest_framework_simplejwt.tokens import AccessToken
    from seed import seed

    population = seed(users=200, distributors=2, hot_retailers=20, retailers_each=20, journal=2000, log=lambda *a: None)
    from config.wsgi import application

    retailer_id = population.retailer_ids[0]
    client_id = population.client_ids[0]
    from accounts.models import User

    def token(user_id):
        return str(AccessToken.for_user(User.objects.get(pk=user_id)))

    phones = population.client_phones
    plan_ids = population.plan_ids

    def request(i):
        if args.scenario == "transfer":
            return environ_for(
                method="POST",
                path="/api/wallet/transfer/",
                token=tokens[client_id],
                body={"to_phone_number": phones[1 + i % (len(phones) - 1)], "amount": "1.00", "remarks": "bench"},
                key=uuid.uuid4().hex,
            )
        if args.scenario == "credit":
            return environ_for(
                method="POST",
                path="/api/wallet/credit/",
                token=tokens[client_id],
                body={"amount": "1.00"},
                key=uuid.uuid4().hex,
            )
        if args.scenario == "purchase":
            return environ_for(
                method="POST",
                path="/api/purchases/purchase/",
                token=tokens[retailer_id],
                body={"plan_id": plan_ids[i % len(plan_ids)], "mobile_number": "9812345678"},
                key=uuid.uuid4().hex,
            )
        if args.scenario == "plans":
            return environ_for(
                method="GET",
                path="/api/plans/plans/",
                token=tokens[client_id],
                query="provider=jio&min_amount=100&max_amount=1000&ordering=amount",
            )
        return environ_for(method="GET", path="/api/wallet/balance/", token=tokens[client_id])

    tokens = {client_id: token(client_id), retailer_id: token(retailer_id)}
    statuses = {}

    def call(environ):
        def start_response(status, headers):
            statuses[status] = statuses.get(status, 0) + 1

        response = application(environ, start_response)
        b"".join(response)
        response.close()

    for i in range(50):  # warm-up: imports, URL resolver, first connection
        call(request(i))
    statuses.clear()
    environs = [request(i) for i in range(args.requests)]
    profiler = None if args.no_profile else cProfile.Profile()
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    for environ in environs:
        call(environ)
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{args.scenario}: {args.requests} requests, statuses {statuses}")
    print(f"per request: {1000 * cpu / args.requests:.2f} ms CPU, {1000 * wall / args.requests:.2f} ms wall")
    if profiler:
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
