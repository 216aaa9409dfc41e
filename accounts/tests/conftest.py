import pytest

from accounts import sms


@pytest.fixture(autouse=True)
def sms_outbox(settings):
    """Every accounts test sends SMS to the local-memory outbox, emptied before each test."""
    settings.SMS_BACKEND = "accounts.sms.LocmemSmsBackend"
    sms.outbox.clear()
    yield sms.outbox
    sms.outbox.clear()
