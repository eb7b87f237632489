from django.apps import AppConfig
from django.db.models.signals import post_migrate


class TrainingConfig(AppConfig):
    name = "webapp.training"
    label = "training"
    verbose_name = "Training"

    def ready(self) -> None:
        from webapp.training import signals  # connects the worker start-up sweep

        post_migrate.connect(signals.sync_schedules_after_migrate, sender=self)
