"""Login codes are sent by a task (accounts.tasks.send_otp_sms): the request never waits on, nor
fails with, the SMS provider, which is retried with backoff."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import otp, sms, tasks
from accounts.models import OneTimePassword
from accounts.tests.helpers import code_from

GENERATE = "/api/auth/otp/generate/"
VERIFY = "/api/auth/otp/verify/"
PHONE = "+919999999999"
pytestmark = pytest.mark.django_db


class FlakySmsBackend(sms.BaseSmsBackend):
    """Fails the first `failures` sends, then delivers to the local-memory outbox."""

    failures = 0
    attempts = 0

    def send(self, message):
        type(self).attempts += 1
        if type(self).attempts <= type(self).failures:
            raise sms.SmsDeliveryFailed()
        sms.outbox.append(message)


@pytest.fixture
def flaky_sms(settings):
    settings.SMS_BACKEND = f"{__name__}.FlakySmsBackend"
    FlakySmsBackend.attempts = 0
    return FlakySmsBackend


def test_a_failing_sms_provider_does_not_fail_the_request_and_is_retried_until_it_delivers(
    api_client, flaky_sms, sms_outbox
):
    flaky_sms.failures = 2

    response = api_client.post(GENERATE, {"phone_number": "9999999999"})

    assert response.status_code == 200, response.data
    assert flaky_sms.attempts == 3
    assert [message.to for message in sms_outbox] == [PHONE]
    login = api_client.post(VERIFY, {"phone_number": PHONE, "otp": code_from(sms_outbox[0])})
    assert login.status_code == 200


def test_a_provider_that_never_answers_is_given_up_after_the_configured_retries(api_client, flaky_sms, settings):
    flaky_sms.failures = 100

    response = api_client.post(GENERATE, {"phone_number": "9999999999"})

    assert response.status_code == 200
    assert flaky_sms.attempts == settings.SMS_MAX_RETRIES + 1
    assert OneTimePassword.objects.count() == 1  # the cooldown and hourly cap still count it


def test_the_task_backs_off_exponentially_between_tries():
    assert (tasks.send_otp_sms.retry_backoff, tasks.send_otp_sms.retry_backoff_max) == (2, 30)
    assert tasks.send_otp_sms.autoretry_for == (sms.SmsDeliveryFailed,)


def test_only_the_codes_id_travels_on_the_queue(api_client, monkeypatch):
    sent = []
    monkeypatch.setattr(tasks.send_otp_sms, "apply_async", lambda *args, **kwargs: sent.append((args, kwargs)))

    response = api_client.post(GENERATE, {"phone_number": "9999999999"})

    assert response.status_code == 200
    otp_id = OneTimePassword.objects.get().pk
    assert sent == [((), {"kwargs": {"otp_id": otp_id}})]


def test_the_task_sends_the_code_that_verifies(sms_outbox):
    issued = otp.request_otp(phone_number=PHONE)
    assert code_from(sms_outbox[-1]) == issued.code


@pytest.mark.parametrize("state", ["consumed", "expired", "superseded"])
def test_a_code_that_can_no_longer_be_used_is_not_sent(sms_outbox, settings, state):
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    issued = otp.request_otp(phone_number=PHONE)
    first = OneTimePassword.objects.get()
    sms_outbox.clear()
    if state == "consumed":
        OneTimePassword.objects.filter(pk=first.pk).update(consumed_at=timezone.now())
    elif state == "expired":
        OneTimePassword.objects.filter(pk=first.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    else:
        otp.request_otp(phone_number=PHONE)
        sms_outbox.clear()

    assert otp.send_otp_sms(otp_id=first.pk) is False
    assert sms_outbox == []
    assert issued.code  # it was issued; it just is not worth sending any more
