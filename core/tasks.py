"""Periodic housekeeping, on the queue (config/celery.py; scheduled by beat, CELERY_BEAT_SCHEDULE)."""

from celery import shared_task

from core import services


@shared_task(name="core.purge_idempotency_keys")
def purge_idempotency_keys():
    return services.purge_idempotency_keys()[0]
