from django.apps import AppConfig


class LabelingConfig(AppConfig):
    name = "webapp.labeling"
    label = "labeling"
    verbose_name = "Labeling"
