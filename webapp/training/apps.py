from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "webapp.training"
    label = "training"
    verbose_name = "Training"

    def ready(self) -> None:
        from webapp.training import signals  # noqa: F401  (connects the worker start-up check)
