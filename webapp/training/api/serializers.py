from rest_framework import serializers

from mlcore.config import Option, TrainConfig
from mlcore.evaluate import headline
from webapp.training.models import DatasetSnapshot, Promotion, TrainingRun


class LaunchSerializer(serializers.Serializer):
    """The launch options; omitted ones take mlcore's defaults. TrainConfig does the range checks."""

    # Built from TrainConfig's declarations (TrainConfig.options("launch")): each field has the
    # option's type, choices, default, help and bounds. A number's bounds are the schema's only: a
    # value out of them is refused by TrainConfig, its sentence under "config" as for any refused
    # option (base_model's length DRF checks, as it always did).
    def get_fields(self):
        return {declared.name: _launch_field(declared) for declared in TrainConfig.options("launch")}


class _SchemaBounds:
    """min_value/max_value for the schema (drf-spectacular reads them), without DRF's validators."""

    def __init__(self, *, bounds: tuple, **kwargs):
        super().__init__(**kwargs)
        self.min_value, self.max_value = bounds


class _BoundedInteger(_SchemaBounds, serializers.IntegerField):
    pass


class _BoundedFloat(_SchemaBounds, serializers.FloatField):
    pass


def _launch_field(declared: Option) -> serializers.Field:
    common = {"default": declared.default, "help_text": declared.help}
    if declared.type is bool:
        # A form-encoded body that leaves a BooleanField out reads as its default (not False), and
        # null keeps mlcore's default too.
        return serializers.BooleanField(allow_null=True, **common)
    if declared.choices:
        return serializers.ChoiceField(choices=list(declared.choices), **common)
    if declared.type is int:
        return _BoundedInteger(bounds=(declared.min, declared.max), **common)
    if declared.type is float:
        return _BoundedFloat(bounds=(declared.min, declared.max), **common)
    return serializers.CharField(max_length=declared.max_chars, **common)


class SnapshotSerializer(serializers.ModelSerializer):
    class Meta:
        model = DatasetSnapshot
        fields = ["id", "fingerprint", "heldout_fingerprint", "train_count", "heldout_count", "intent_counts", "created_at"]


class TrainingRunSerializer(serializers.ModelSerializer):
    snapshot = SnapshotSerializer()
    created_by = serializers.StringRelatedField()
    progress = serializers.FloatField()
    validation = serializers.SerializerMethodField()
    heldout = serializers.SerializerMethodField()

    class Meta:
        model = TrainingRun
        fields = [
            "id", "status", "config", "requested_device", "device_used", "step", "total_steps", "epoch", "progress",
            "latest_metrics", "validation", "heldout", "cancel_requested", "error_message", "artifact_sha256",
            "artifact_size", "snapshot", "created_by", "created_at", "started_at", "finished_at",
        ]

    def get_validation(self, run) -> dict | None:
        return headline(run.validation_report) if run.validation_report else None

    def get_heldout(self, run) -> dict | None:
        return headline(run.heldout_report) if run.heldout_report else None


class PromoteSerializer(serializers.Serializer):
    override_reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class PromotionSerializer(serializers.ModelSerializer):
    promoted_by = serializers.StringRelatedField()

    class Meta:
        model = Promotion
        fields = ["id", "run", "status", "previous_run", "promoted_by", "requested_at", "promoted_at", "finished_at",
                  "serving_uri", "version_uri", "heldout_accuracy", "previous_heldout_accuracy", "override_reason", "error_message"]
