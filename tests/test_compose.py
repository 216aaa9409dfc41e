"""compose.yaml: the production topology (app, worker, scheduler, PostgreSQL, Redis) from the Dockerfile."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _services():
    return yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]


def test_compose_runs_the_app_a_worker_the_scheduler_postgres_and_redis():
    services = _services()
    assert {"app", "worker", "beat", "postgres", "redis", "migrate"} <= set(services)
    for name in ("app", "worker", "beat", "migrate"):
        assert services[name]["build"] == "."  # the Dockerfile's image
        env = services[name]["environment"]
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:")
        assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]


def test_the_worker_keeps_64_operator_calls_in_flight_on_threads_and_beat_is_one_scheduler():
    services = _services()
    worker, beat = services["worker"]["command"], services["beat"]["command"]
    assert worker[:4] == ["celery", "-A", "config", "worker"]
    assert worker[worker.index("--pool") + 1] == "threads" and worker[worker.index("--concurrency") + 1] == "64"
    assert beat[:4] == ["celery", "-A", "config", "beat"]
    assert "deploy" not in services["beat"]  # never replicated


def test_the_app_serves_gunicorn_2x4_and_sums_metrics_across_its_workers():
    env = _services()["app"]["environment"]
    assert (env["WEB_CONCURRENCY"], env["GUNICORN_CMD_ARGS"]) == ("2", "--threads 4")
    assert env["PROMETHEUS_MULTIPROC_DIR"] in " ".join(_services()["app"]["tmpfs"])
