from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from core.models import IdempotencyRecord


@pytest.mark.django_db
def test_purge_deletes_keys_older_than_the_ttl_and_keeps_recent_ones(client_user, capsys):
    now = timezone.now()
    old = IdempotencyRecord.objects.create(user=client_user, key="old", endpoint="e", fingerprint="f", locked_at=now)
    recent = IdempotencyRecord.objects.create(user=client_user, key="new", endpoint="e", fingerprint="f", locked_at=now)
    IdempotencyRecord.objects.filter(pk=old.pk).update(created_at=now - timedelta(hours=25))
    IdempotencyRecord.objects.filter(pk=recent.pk).update(created_at=now - timedelta(hours=23))
    call_command("purge_idempotency_keys")
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]
    assert "Purged 1" in capsys.readouterr().out


@pytest.mark.django_db
def test_purge_never_deletes_keys_younger_than_a_day_even_when_asked(client_user):
    record = IdempotencyRecord.objects.create(
        user=client_user, key="k", endpoint="e", fingerprint="f", locked_at=timezone.now()
    )
    IdempotencyRecord.objects.filter(pk=record.pk).update(created_at=timezone.now() - timedelta(hours=2))
    call_command("purge_idempotency_keys", hours=1)
    assert IdempotencyRecord.objects.filter(pk=record.pk).exists()
