"""Writes that belong to no business app: the housekeeping of `core`'s own tables."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from core.models import IdempotencyRecord

MINIMUM_KEY_TTL_HOURS = 24  # ledger.md: keys are kept at least a day


def purge_idempotency_keys(*, hours=None) -> tuple[int, int]:
    """Delete Idempotency-Key records older than `hours` (IDEMPOTENCY_KEY_TTL_HOURS by default, never
    under a day). Returns (records deleted, hours used). One DELETE: safe to run on several machines at
    once (a second run finds nothing left to delete)."""
    hours = max(settings.IDEMPOTENCY_KEY_TTL_HOURS if hours is None else hours, MINIMUM_KEY_TTL_HOURS)
    cutoff = timezone.now() - timedelta(hours=hours)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted, hours
