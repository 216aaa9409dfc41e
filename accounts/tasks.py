"""Tasks of the accounts app (config/celery.py)."""

from celery import shared_task
from django.conf import settings

from accounts import otp
from accounts.sms import SmsDeliveryFailed


@shared_task(
    name="accounts.send_otp_sms",
    autoretry_for=(SmsDeliveryFailed,),
    max_retries=settings.SMS_MAX_RETRIES,
    retry_backoff=2,  # 2, 4, 8, 16 s ... (with jitter), never more than retry_backoff_max
    retry_backoff_max=30,
    retry_jitter=True,
)
def send_otp_sms(otp_id):
    """Send a login code's SMS; a failing provider is retried with backoff while the code lives."""
    return otp.send_otp_sms(otp_id=otp_id)
