import threading

import pytest
from django.db import connection

from accounts import otp
from accounts.models import User
from core.errors import DomainError

PHONE = "+919999999999"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_verifications_of_one_code_log_in_once(settings):
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    issued = otp.request_otp(phone_number=PHONE)
    threads_count = 4
    barrier = threading.Barrier(threads_count)
    results = []

    def verify():
        try:
            barrier.wait()
            results.append(otp.verify_otp(phone_number=PHONE, code=issued.code))
        except DomainError as exc:
            results.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=verify) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logins = [result for result in results if isinstance(result, tuple)]
    assert len(logins) == 1
    assert results.count("otp_invalid") == threads_count - 1
    assert User.objects.filter(phone_number=PHONE).count() == 1
