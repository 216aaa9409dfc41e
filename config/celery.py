"""The Celery application: `celery -A config worker` (make worker) and `celery -A config beat` (make beat).

Every setting comes from Django's settings (the CELERY_* names in config/settings.py, read from the
environment). With no CELERY_BROKER_URL, tasks run eagerly in the process that enqueues them, right
after the commit that enqueued them, so the SQLite demo (`make run`) completes a purchase with no
broker and no worker. Tasks live in each app's `tasks.py` and are found by autodiscovery.
"""

import os

from celery import Celery
from celery.signals import worker_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("recharge")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _worker_database_threads(sender=None, **kwargs):
    """A worker runs its database work on a few dedicated threads (core.db_threads), so that its many
    pool threads, each waiting on an operator, hold no database connection."""
    from django.conf import settings  # here: this module loads with Django's settings, before apps

    from core import db_threads

    db_threads.enable(size=settings.CELERY_WORKER_DB_CONNECTIONS)


@worker_process_init.connect
def _prefork_child_database_threads(**kwargs):
    # A prefork child inherits the flag but not the threads: they start again in the child, lazily.
    from core import db_threads

    db_threads.reset_after_fork()
