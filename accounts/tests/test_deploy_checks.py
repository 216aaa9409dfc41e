import pytest
from django.core.checks import run_checks

HTTP = "accounts.sms.HttpSmsBackend"


def _ids(settings_overrides, settings):
    for name, value in settings_overrides.items():
        setattr(settings, name, value)
    return {message.id for message in run_checks(include_deployment_checks=True) if message.id.startswith("accounts.")}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"SMS_BACKEND": "accounts.sms.ConsoleSmsBackend", "OTP_EXPOSE_IN_RESPONSE": False}, {"accounts.W001"}),
        (
            {
                "SMS_BACKEND": HTTP,
                "SMS_HTTP_URL": "http://sms",
                "OTP_EXPOSE_IN_RESPONSE": False,
            },
            {"accounts.W002"},
        ),
        (
            {
                "SMS_BACKEND": HTTP,
                "SMS_HTTP_URL": "https://sms",
                "OTP_EXPOSE_IN_RESPONSE": True,
            },
            {"accounts.W003"},
        ),
        (
            {
                "SMS_BACKEND": HTTP,
                "SMS_HTTP_URL": "https://sms",
                "OTP_EXPOSE_IN_RESPONSE": False,
            },
            set(),
        ),
    ],
)
def test_deploy_check_refuses_otp_settings_that_leak_codes(settings, overrides, expected):
    assert _ids(overrides, settings) == expected


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, set()),
        ({"OTP_DAILY_GUESS_BUDGET": 40}, {"accounts.W004"}),
        ({"OTP_LENGTH": 4}, {"accounts.W004"}),
    ],
)
def test_deploy_check_warns_when_the_otp_limits_let_guessing_reach_one_in_ten_thousand(settings, overrides, expected):
    secure = {"SMS_BACKEND": HTTP, "SMS_HTTP_URL": "https://sms", "OTP_EXPOSE_IN_RESPONSE": False}
    assert _ids({**secure, **overrides}, settings) == expected
