from django.core.checks import Error, Tags, register


@register(Tags.security, deploy=True)
def check_no_account_keeps_a_published_demo_password(app_configs, **kwargs):
    """The demo passwords are in this repository (and printed by `make run`): in production an account
    that still has one is an account anyone can log into."""
    from demo.services import accounts_with_published_passwords  # here: a failing import fails the check, not start-up

    try:
        exposed = accounts_with_published_passwords()
    except Exception:  # noqa: BLE001 - a deploy check must never crash
        # No database (not reachable, not migrated, not allowed): the check cannot tell, so it says
        # nothing rather than stop a deployment check run without one (CI's, for instance).
        return []
    if not exposed:
        return []
    return [
        Error(
            f"These active accounts still have the demo password published in the repository: {', '.join(exposed)}.",
            hint="Change their passwords (manage.py changepassword USERNAME) or deactivate them; "
            "setup_demo_data is for development.",
            id="demo.E001",
        )
    ]
