"""A real server for the suites that must see what production sees: gunicorn, its own database
(PostgreSQL, or an SQLite file like `make run`'s), persistent connections. Used by the fault suite
(backends killed under load), the schema fuzzer and the SQLite demo-concurrency test. The database
is created and dropped around the session."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import dj_database_url
import psycopg2

ROOT = Path(__file__).resolve().parent.parent

SEED_SCRIPT = """
import json
from decimal import Decimal
from rest_framework_simplejwt.tokens import RefreshToken
from accounts.models import User
from core.roles import UserType
from plans.models import Provider, RechargePlan
from wallet import services as ledger
from accounts.models import UserMargin

def user(username, user_type, parent=None, phone=None):
    found = User.objects.filter(username=username).first()
    if found:
        return found
    return User.objects.create_user(username, email=f"{username}@live.test", password="Live-Pass-123!",
                                    user_type=user_type, parent=parent, phone_number=phone,
                                    phone_verified=phone is not None,
                                    is_staff=user_type == UserType.ADMIN, is_superuser=user_type == UserType.ADMIN)

admin = user("live-admin", UserType.ADMIN)
distributor = user("live-distributor", UserType.DISTRIBUTOR, phone="+919811100001")
retailer = user("live-retailer", UserType.RETAILER, parent=distributor, phone="+919811100002")
client = user("live-client", UserType.CLIENT, phone="+919811100003")
UserMargin.objects.get_or_create(user=distributor, defaults={"margin_percentage": Decimal("3.00")})
UserMargin.objects.get_or_create(user=retailer, defaults={"margin_percentage": Decimal("2.00")})
for who, amount in ((distributor, "50000.00"), (retailer, "5000.00"), (client, "500.00")):
    ledger.fund_wallet(user=who, amount=amount, initiated_by=admin, remarks="live seed")
provider, _ = Provider.objects.get_or_create(code="live-op", defaults={"name": "Live Operator"})
plan, _ = RechargePlan.objects.get_or_create(code="live-plan-19", defaults={"provider": provider,
                                              "amount": Decimal("19.00"), "validity_days": 1})
print("SEED" + json.dumps({
    "tokens": {u.username.removeprefix("live-"): str(RefreshToken.for_user(u).access_token)
               for u in (admin, distributor, retailer, client)},
    "ids": {"admin": admin.pk, "distributor": distributor.pk, "retailer": retailer.pk, "client": client.pk,
            "plan": plan.pk},
    "phones": {"distributor": distributor.phone_number, "retailer": retailer.phone_number,
               "client": client.phone_number},
}))
"""


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveStack:
    def __init__(
        self,
        base_database_url,
        name_suffix="live",
        workers=2,
        extra_env=None,
        gunicorn_args=(),
        broker_url=None,
        worker_concurrency=16,
    ):
        config = dj_database_url.parse(base_database_url)
        self.sqlite = config["ENGINE"].endswith("sqlite3")
        if self.sqlite:
            # The embedded default: a file of its own, as `make run` uses one.
            self.sqlite_path = ROOT / "artifacts" / f"live-{name_suffix}.sqlite3"
            self.database = self.sqlite_path.name
            self.database_url = f"sqlite:///{self.sqlite_path}"
        else:
            self.admin_dsn = {
                "host": config["HOST"] or "127.0.0.1",
                "port": config["PORT"] or 5432,
                "user": config["USER"] or "postgres",
                "password": config["PASSWORD"] or None,
                "dbname": "postgres",
            }
            self.database = f"{config['NAME']}_{name_suffix}"[:60]
            user = config["USER"] or "postgres"
            self.database_url = f"postgres://{user}@{self.admin_dsn['host']}:{self.admin_dsn['port']}/{self.database}"
        self.gunicorn_args = list(gunicorn_args)
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "DEBUG": "false",
            "SECRET_KEY": "live-stack-secret-key-for-tests-only-0123456789abcdef",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "false",
            "OTP_EXPOSE_IN_RESPONSE": "true",
            "THROTTLE_OTP": "100000/min",
            "THROTTLE_LOGIN": "100000/min",
            "THROTTLE_SIGNUP": "100000/min",
            "THROTTLE_TOKEN": "100000/min",
            "THROTTLE_MONEY": "100000/min",
            # The stacks top wallets up as the demo does (the default follows DEBUG, off here).
            "WALLET_SELF_TOPUP_ENABLED": "true",
            "DB_LOCK_TIMEOUT_MS": "2000",
            "IDEMPOTENCY_WAIT_SECONDS": "2",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        self.env.pop("CELERY_BROKER_URL", None)
        # With a broker, a real Celery worker fulfils the tasks, on a queue of this stack's own: two
        # stacks (or two checkouts' CI runs) sharing a broker never take each other's messages.
        self.broker_url = broker_url
        self.worker_concurrency = worker_concurrency
        self.queue = f"live-{name_suffix}-{self.port}"
        if broker_url:
            self.env.update(CELERY_BROKER_URL=broker_url, CELERY_QUEUE=self.queue)
        self.server = None
        self.worker = None
        # The worker runs the periodic work too (celery worker --beat), as `make beat` beside it would.
        self.worker_beat = False
        self.seed = None

    # --- database ---------------------------------------------------------------------
    def _admin(self, sql):
        conn = psycopg2.connect(**{k: v for k, v in self.admin_dsn.items() if v is not None})
        conn.autocommit = True
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall() if cursor.description else None
        finally:
            conn.close()

    def terminate_backends(self):
        """Kill every server connection to the live database (what a failover or an admin does)."""
        rows = self._admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{self.database}' AND pid <> pg_backend_pid()"
        )
        return len(rows or [])

    def manage(self, *args, check=True):
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=600,
        )

    # --- lifecycle ----------------------------------------------------------------------
    def start(self):
        (ROOT / "artifacts").mkdir(exist_ok=True)
        if self.sqlite:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.sqlite_path}{suffix}").unlink(missing_ok=True)
        else:
            self._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            self._admin(f'CREATE DATABASE "{self.database}"')
        self.manage("migrate", "-v0")
        output = self.manage("shell", "-c", SEED_SCRIPT).stdout
        self.seed = json.loads(output[output.index("SEED") + 4 :].strip().splitlines()[0])
        if self.broker_url:
            self.purge_queue()
            self.start_worker()
        self.log = open(ROOT / "artifacts" / f"gunicorn-{self.port}.log", "w")  # noqa: SIM115
        self.server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi",
                "-b",
                f"127.0.0.1:{self.port}",
                "-w",
                str(self.workers),
                "--timeout",
                "60",
                "--graceful-timeout",
                "5",
                # As the Dockerfile: a request line up to 8190 bytes (gunicorn's ceiling) reaches Django,
                # which answers it in the documented shape, not with gunicorn's HTML 414.
                "--limit-request-line",
                "8190",
                *self.gunicorn_args,
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/api/health/")[0] == 200:
                    return self
            except OSError:
                pass
            if self.server.poll() is not None:
                raise RuntimeError(f"gunicorn exited: see {self.log.name}")
            time.sleep(0.2)
        raise RuntimeError("the live server did not answer /api/health/ within 60 s")

    # --- the task queue's worker ---------------------------------------------------------
    def start_worker(self):
        """`celery worker` as `make worker` starts it (thread pool), on this stack's queue."""
        assert self.broker_url, "this stack has no broker"
        self.worker_log = open(ROOT / "artifacts" / f"worker-{self.port}.log", "a")  # noqa: SIM115
        self.worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool",
                "threads",
                "--concurrency",
                str(self.worker_concurrency),
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--hostname",
                f"{self.queue}@%h",
                *(["--beat", "--schedule", str(ROOT / "artifacts" / f"beat-{self.port}")] if self.worker_beat else []),
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.worker_log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.worker.poll() is not None:
                raise RuntimeError(f"the worker exited: see {self.worker_log.name}")
            if "ready." in Path(self.worker_log.name).read_text(errors="replace"):
                return self.worker
            time.sleep(0.2)
        raise RuntimeError("the worker was not ready within 60 s")

    def kill_worker(self):
        """SIGKILL: no warm shutdown, no acknowledgement of what it was running."""
        self.worker.kill()
        self.worker.wait(timeout=15)
        self.worker_log.close()
        self.worker = None

    def stop_worker(self):
        if self.worker is None:
            return
        self.worker.terminate()
        try:
            self.worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.worker.kill()
            self.worker.wait(timeout=15)
        self.worker_log.close()
        self.worker = None

    def worker_output(self):
        return (ROOT / "artifacts" / f"worker-{self.port}.log").read_text(errors="replace")

    def purge_queue(self):
        self.manage("shell", "-c", "from config.celery import app; app.control.purge()", check=False)

    def stop(self):
        self.stop_worker()
        if self.broker_url:
            self.purge_queue()
        if self.server is not None:
            self.server.terminate()
            try:
                self.server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.server.kill()
            self.log.close()
        if not self.sqlite:
            with contextlib.suppress(psycopg2.Error):
                self._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    # --- HTTP --------------------------------------------------------------------------
    def request(self, method, path, body=None, token=None, headers=None, timeout=30):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback only
                return response.status, _json(response.read()), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, _json(error.read()), dict(error.headers)


def _json(raw):
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return {"raw": raw.decode(errors="replace")[:500]}


def broker_for_tests():
    """The broker the integration tests' workers use (CELERY_TEST_BROKER_URL, set by .ci/run): never
    the one a developer's own worker reads. Without it these tests skip, and fail under CI=true."""
    import pytest

    url = os.environ.get("CELERY_TEST_BROKER_URL", "")
    if not url:
        message = "needs a broker for a real worker: set CELERY_TEST_BROKER_URL (e.g. redis://127.0.0.1:6379/14)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("CI=true: " + message)
        pytest.skip(message)
    return url
