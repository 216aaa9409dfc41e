"""The settings module, as production and CI start it: each case runs in a fresh interpreter with a
clean environment, because settings are read once, at import."""

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_ENV_FILE = ROOT / ".ci" / "production.env"


def production_env():
    """The README's production variables (.ci/production.env) plus a long random SECRET_KEY."""
    env = {}
    for line in PRODUCTION_ENV_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    env["SECRET_KEY"] = secrets.token_urlsafe(64)
    return env


def run_python(args, **env):
    """Run the project's interpreter with only PATH/HOME and the given variables set."""
    # ENV_FILE="": a developer's .env (written by `make run`) must not change what these cases test.
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), "ENV_FILE": ""}
    clean.update(env)
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120, check=False
    )


_DUMP_SETTINGS = """
import json
from config import settings as s
print(json.dumps({"CACHES": s.CACHES, "DATABASES": s.DATABASES}, default=str))
"""


def settings_with(**env):
    result = run_python(["-c", _DUMP_SETTINGS], **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_start_up_without_a_secret_key_stops_with_a_clear_message_when_debug_is_off():
    result = run_python(
        ["-c", "import django; django.setup()"], DJANGO_SETTINGS_MODULE="config.settings", DEBUG="false"
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY is not set" in result.stderr


def test_operator_callbacks_are_applied_by_the_worker_or_the_request_and_nothing_else():
    result = run_python(
        ["-c", "import django; django.setup()"],
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="true",
        RECHARGE_CALLBACK_APPLY="inline",
    )
    assert result.returncode != 0
    assert "RECHARGE_CALLBACK_APPLY is worker or request" in result.stderr


def test_debug_mode_starts_without_a_secret_key():
    # The other side of the previous test: the refusal is about production, not about any start-up.
    result = run_python(["-c", "import django; django.setup()"], DJANGO_SETTINGS_MODULE="config.settings", DEBUG="true")
    assert result.returncode == 0, result.stderr


def test_after_make_run_manage_py_commands_work_in_the_checkout_without_any_variable(tmp_path):
    # What `make run` writes (its .env target), read back by the settings as a fresh shell would.
    written = subprocess.run(
        ["make", "-s", f"ENV_FILE={tmp_path}/.env", f"{tmp_path}/.env"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert written.returncode == 0, written.stderr
    result = run_python(["manage.py", "check"], ENV_FILE=str(tmp_path / ".env"))
    assert result.returncode == 0, result.stderr


def test_without_that_file_production_still_refuses_to_start_without_a_secret_key(tmp_path):
    result = run_python(["manage.py", "check"], ENV_FILE=str(tmp_path / "absent.env"))
    assert result.returncode != 0 and "SECRET_KEY is not set" in result.stderr


def test_deploy_check_passes_with_the_documented_production_variables():
    result = run_python(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_deploy_check_fails_when_production_runs_with_debug_on():
    # Proves the check above can fail: DEBUG on in a deployment is warning security.W018.
    result = run_python(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **{**production_env(), "DEBUG": "true"}
    )
    assert result.returncode != 0
    assert "security.W018" in result.stdout + result.stderr


def test_redis_url_switches_the_cache_to_redis():
    caches = settings_with(DEBUG="true", REDIS_URL="redis://127.0.0.1:6379/7")["CACHES"]["default"]
    assert caches["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert caches["LOCATION"] == "redis://127.0.0.1:6379/7"


def test_without_redis_url_the_cache_is_local_memory():
    caches = settings_with(DEBUG="true")["CACHES"]["default"]
    assert caches["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"


def test_postgresql_connections_are_persistent_with_health_checks():
    database = settings_with(DEBUG="true", DATABASE_URL="postgres://app@db.example.com:5432/recharge")["DATABASES"][
        "default"
    ]
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert database["CONN_MAX_AGE"] > 0
    assert database["CONN_HEALTH_CHECKS"] is True


def test_postgresql_sessions_get_lock_and_statement_timeouts_from_the_environment():
    database = settings_with(
        DEBUG="true",
        DATABASE_URL="postgres://app@db.example.com:5432/recharge",
        DB_LOCK_TIMEOUT_MS="1234",
        DB_STATEMENT_TIMEOUT_MS="5678",
    )["DATABASES"]["default"]
    options = database["OPTIONS"]["options"]
    assert "-c lock_timeout=1234" in options
    assert "-c statement_timeout=5678" in options


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_live_postgresql_session_runs_with_the_configured_timeouts():
    with connection.cursor() as cursor:
        cursor.execute("SHOW lock_timeout")
        lock_timeout = cursor.fetchone()[0]
        cursor.execute("SHOW statement_timeout")
        statement_timeout = cursor.fetchone()[0]
    assert lock_timeout == _pg_duration(settings.DB_LOCK_TIMEOUT_MS)
    assert statement_timeout == _pg_duration(settings.DB_STATEMENT_TIMEOUT_MS)


def _pg_duration(milliseconds):
    """How PostgreSQL's SHOW prints a duration given in milliseconds (5000 -> '5s')."""
    return f"{milliseconds // 1000}s" if milliseconds % 1000 == 0 else f"{milliseconds}ms"


# os.environ.get("X"), os.environ["X"], env_bool("X"), env_int("X"), env_list("X")
_ENVIRONMENT_READ = re.compile(r'(?:os\.environ\.get\(|os\.environ\[|env_(?:bool|int|list)\()\s*"([A-Z][A-Z0-9_]*)"')


def test_every_variable_the_settings_read_is_documented_in_the_readme():
    """README's "Configuration" is the list of knobs (security ones included): a variable that
    config/settings.py reads and the README does not name is a setting nobody can find."""
    read = set(_ENVIRONMENT_READ.findall((ROOT / "config" / "settings.py").read_text()))
    readme = (ROOT / "README.md").read_text()
    assert len(read) > 40, sorted(read)  # the pattern still finds how settings.py reads variables
    assert not sorted(name for name in read if f"`{name}`" not in readme)
