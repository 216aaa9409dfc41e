"""Where one request's CPU goes: the WSGI application called in-process, under cProfile.

    .venv/bin/python bench/profile_request.py transfers --requests 2000 --top 40

Recreates PROFILE_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/recharge_profile),
migrates it, seeds a handful of users through the services, then sends `--requests` of the
benchmark's own requests (bench/load.py's scenarios: Bearer token, Idempotency-Key on money)
straight to `config.wsgi.application`, with no HTTP server and no network. Prints the CPU time
per request and the functions that take it. `make bench` measures throughput; this says why.

    .venv/bin/python bench/profile_request.py balance --twin bench/results/.fixture-naive.json

does the same for the naive twin (bench/naive/), on the database and with the people of the last
`make bench` (its fixture and BENCH_NAIVE_DATABASE_URL, default recharge_bench_naive; nothing is
recreated): the floor a Django, DRF and simplejwt request stands on, side by side with ours.
"""

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/recharge_profile"


def environ_for(*, method, path, headers, body):
    """The WSGI environ gunicorn would hand the application for this request."""
    path, _, query = path.partition("?")
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
        "wsgi.input": io.BytesIO(payload),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
        **{f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()},
    }
    if body is not None:
        environ["CONTENT_TYPE"] = "application/json"
        environ["CONTENT_LENGTH"] = str(len(payload))
    return environ


def main():
    from run import SCENARIOS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=SCENARIOS, help="one of the benchmark's scenarios")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"])
    parser.add_argument("--no-profile", action="store_true", help="only time the requests")
    parser.add_argument("--timer", default="cpu", choices=["cpu", "wall"], help="what the profile charges")
    parser.add_argument("--twin", metavar="FIXTURE", help="profile the naive twin with a bench run's fixture")
    parser.add_argument("--queries", action="store_true", help="print the SQL of one request, after the warm-up")
    parser.add_argument("--by-origin", action="store_true", help="CPU per request by whose code runs it")
    parser.add_argument(
        "--hot-retailers",
        type=int,
        default=20,
        help="the hot distributor's retailers, so its payouts' lines (the benchmark pays 1,000)",
    )
    args = parser.parse_args()

    if args.twin:
        application, make_request = twin_application(args.scenario, Path(args.twin))
    else:
        application, make_request = project_application(args.scenario, hot_retailers=args.hot_retailers)
    statuses = {}

    def call(environ):
        def start_response(status, headers):
            statuses[status] = statuses.get(status, 0) + 1

        response = application(environ, start_response)
        b"".join(response)
        response.close()

    def environs(count):
        for _ in range(count):
            method, path, headers, body, _expected = make_request()
            yield environ_for(method=method, path=path, headers=headers, body=body)

    for environ in environs(50):  # warm-up: imports, URL resolver, first connection
        call(environ)
    statuses.clear()
    if args.queries:
        print_queries(call, next(environs(1)))
        print(f"answered {statuses}")
        statuses.clear()
    prepared = list(environs(args.requests))
    # CPU time by default: a wall-clock profile charges the database's answer (and the commit's
    # flush) to `cursor.execute`, hiding what the Python side costs.
    timer = time.process_time if args.timer == "cpu" else time.perf_counter
    profiler = None if args.no_profile else cProfile.Profile(timer)
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    for environ in prepared:
        call(environ)
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{args.scenario}: {args.requests} requests, statuses {statuses}")
    print(f"per request: {1000 * cpu / args.requests:.2f} ms CPU, {1000 * wall / args.requests:.2f} ms wall")
    if profiler and args.by_origin:
        print_by_origin(pstats.Stats(profiler), requests=args.requests, own="the twin" if args.twin else "the project")
    elif profiler:
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)


# Whose code a request's CPU runs in, by the file of each function (its own time, `tottime`): the part a
# Django + DRF + simplejwt + psycopg2 request pays whatever its view does, against the part its own code
# adds. First match wins; C functions (`{method 'execute' of 'psycopg2...cursor' objects}`) have no file
# and are told by their name.
ORIGINS = (
    ("psycopg2 (the driver: sending, parsing answers)", ("psycopg2",)),
    ("simplejwt + PyJWT (the token)", ("/rest_framework_simplejwt/", "/jwt/")),
    ("DRF (request, parsers, serializers, renderers)", ("/rest_framework/",)),
    ("Django (handler, middleware, ORM, HTTP)", ("/django/",)),
    ("other libraries", ("site-packages",)),
)


ROOT = Path(__file__).resolve().parent.parent


def origin_of(filename, function_name, *, own):
    """The group of ORIGINS a profiled function belongs to; `own` names the code of the repository
    (the project, or the twin under bench/naive/) but this script's own loop; anything else is Python
    itself (the standard library, builtins)."""
    where = f"{filename} {function_name}"
    for name, markers in ORIGINS:
        if any(marker in where for marker in markers):
            return name
    if filename == str(Path(__file__).resolve()):
        return "this script's loop"
    if filename.startswith(str(ROOT)):
        return f"{own}'s own code"
    return "Python (standard library, builtins)"


def print_by_origin(stats, *, requests, own):
    totals = {}
    for (filename, _line, function_name), (_calls, _primitive, own_time, _cumulative, _callers) in stats.stats.items():
        origin = origin_of(filename, function_name, own=own)
        totals[origin] = totals.get(origin, 0.0) + own_time
    whole = sum(totals.values()) or 1.0
    print("\n| whose code | ms CPU per request (profiled) | share |\n| --- | ---: | ---: |")
    for origin, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"| {origin} | {1000 * seconds / requests:.2f} | {100 * seconds / whole:.0f} % |")
    print(f"| all | {1000 * whole / requests:.2f} | 100 % |")


def print_queries(call, environ):
    """The statements one request sends, in order (with no broker, a purchase's fulfilment runs in the
    request, after its commit: its statements follow the acceptance's)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from core.precompiled import statement_of

    with CaptureQueriesContext(connection) as captured:
        call(environ)
    print(f"{len(captured.captured_queries)} statements:")
    for number, query in enumerate(captured.captured_queries, 1):
        sent = query["sql"]
        # A prepared statement is sent as EXECUTE <name>(values): shown with the SQL it stands for.
        shown = sent if statement_of(sent) == sent else f"{sent.split('(')[0]} = {statement_of(sent)}"
        print(f"{number:3}. {shown[:220]}")


def project_application(scenario, *, hot_retailers=20):
    from run import build_fixture, configure_environment, recreate_database

    database_url = os.environ.get("PROFILE_DATABASE_URL", DEFAULT_DB)
    configure_environment(database_url)
    recreate_database(database_url)

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from load import Scenarios
    from seed import seed

    population = seed(
        users=max(200, 5 * hot_retailers + 50),  # seed() keeps hot retailers to a fifth of the users
        distributors=2,
        hot_retailers=hot_retailers,
        retailers_each=20,
        journal=2000,
        log=lambda *a: None,
    )
    from config.wsgi import application

    # The benchmark's own requests (bench/load.py), sent to the application instead of a server.
    return application, getattr(Scenarios(build_fixture(population, base_url="")), scenario)


def twin_application(scenario, fixture_path):
    from run import DEFAULT_DB as BENCH_DB
    from run import SCENARIOS, twin_database_url

    twin_scenario = SCENARIOS[scenario][3]
    if twin_scenario is None:
        raise SystemExit(f"the naive twin has no {scenario}")
    fixture = json.loads(fixture_path.read_text())
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.naive.settings",
            "NAIVE_DATABASE_URL": twin_database_url(os.environ.get("BENCH_DATABASE_URL", BENCH_DB)),
            "NAIVE_SECRET_KEY": fixture["secret_key"],
        }
    )
    import django

    django.setup()
    from load import Scenarios

    from bench.naive.wsgi import application

    return application, getattr(Scenarios(fixture), twin_scenario)


if __name__ == "__main__":
    main()
