from django.conf import settings
from django.core.checks import Tags, Warning, register

CONSOLE_BACKENDS = {"accounts.sms.ConsoleSmsBackend", "accounts.sms.LocmemSmsBackend"}


@register(Tags.security, deploy=True)
def check_sms_backend_delivers_codes(app_configs, **kwargs):
    """In production an OTP must reach a phone, not a log file or a test outbox."""
    problems = []
    if settings.SMS_BACKEND in CONSOLE_BACKENDS:
        problems.append(
            Warning(
                f"SMS_BACKEND is {settings.SMS_BACKEND}: login codes are logged, not sent.",
                hint="Set SMS_BACKEND=accounts.sms.HttpSmsBackend and SMS_HTTP_URL for production.",
                id="accounts.W001",
            )
        )
    elif settings.SMS_BACKEND == "accounts.sms.HttpSmsBackend" and not settings.SMS_HTTP_URL.startswith("https://"):
        problems.append(
            Warning("SMS_HTTP_URL is not an https:// URL: codes would travel in clear.", id="accounts.W002")
        )
    if settings.OTP_EXPOSE_IN_RESPONSE:
        problems.append(Warning("OTP_EXPOSE_IN_RESPONSE is on: anyone can log in as any phone.", id="accounts.W003"))
    return problems


@register(Tags.security, deploy=True)
def check_otp_guessing_stays_under_one_in_ten_thousand(app_configs, **kwargs):
    """accounts/otp.py: at most BUDGET + GUARDED tries reach a phone's codes per window, and a 24-hour
    span overlaps two windows at most. README, "OTP guessing"."""
    tries = 2 * (settings.OTP_DAILY_GUESS_BUDGET + settings.OTP_GUARDED_CODES_PER_DAY)
    chance = tries / 10**settings.OTP_LENGTH
    if chance < 1e-4:
        return []
    return [
        Warning(
            f"OTP limits let {tries} tries per phone reach its codes in 24 hours: a stranger guesses a "
            f"{settings.OTP_LENGTH}-digit code with probability {chance:.1e}, not under 1e-4.",
            hint="Lower OTP_DAILY_GUESS_BUDGET or OTP_GUARDED_CODES_PER_DAY, or raise OTP_LENGTH.",
            id="accounts.W004",
        )
    ]
