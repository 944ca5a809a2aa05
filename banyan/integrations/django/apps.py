"""The Django app config (imported by Django, which it imports)."""

from __future__ import annotations

from django.apps import AppConfig  # type: ignore[import-untyped]
from django.conf import settings  # type: ignore[import-untyped]

import banyan


class BanyanConfig(AppConfig):  # type: ignore[misc]
    """Configures the default logger from ``settings.BANYAN`` when the apps are ready."""

    name = "banyan.integrations.django"
    label = "banyan"
    verbose_name = "Banyan"

    def ready(self) -> None:
        """``banyan.configure(**settings.BANYAN)``."""
        banyan.configure(**getattr(settings, "BANYAN", {}))
