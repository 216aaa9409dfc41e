from django.apps import AppConfig


class DemoConfig(AppConfig):
    """Demo data for a first run (`manage.py setup_demo_data`). It only calls the other apps'
    services, so it is an app of its own: no product app depends on it, and it owns no table."""

    name = "demo"
    verbose_name = "Demo data"

    def ready(self):
        from demo import checks  # noqa: F401 - registers the deploy check
