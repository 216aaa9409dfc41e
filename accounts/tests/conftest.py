import pytest

from accounts import sms


@pytest.fixture(autouse=True)
def sms_outbox(settings):
    """Every accounts test sends SMS to the local-memory outbox, emptied before each test."""
    settings.SMS_BACKEND = "accounts.sms.LocmemSmsBackend"
    # Password hashing is not what these tests measure; a fast hasher keeps the suite quick.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    sms.outbox.clear()
    yield sms.outbox
    sms.outbox.clear()


def code_from(message):
    """The digits of the code in an SMS body."""
    return next(word for word in message.body.replace(".", " ").split() if word.isdigit() and len(word) >= 4)
