from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


def _sync_warning_rules(sender, using="default", **kwargs) -> None:
    """Give every rule defined in code its administrator's settings row."""
    from .rules import sync_rules

    if using == "default":
        sync_rules()


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = _("Monitoring")

    def ready(self) -> None:
        post_migrate.connect(_sync_warning_rules, sender=self)
