from rest_framework import serializers

from mlcore.evaluate import headline
from webapp.training.models import DatasetSnapshot, Promotion, TrainingRun


class LaunchSerializer(serializers.Serializer):
    """The launch options; omitted ones take mlcore's defaults. TrainConfig does the range checks."""

    base_model = serializers.CharField(required=False, max_length=500)
    device = serializers.ChoiceField(choices=["auto", "cpu", "cuda"], required=False)
    epochs = serializers.IntegerField(required=False)
    batch_size = serializers.IntegerField(required=False)
    learning_rate = serializers.FloatField(required=False)
    seed = serializers.IntegerField(required=False)
    max_length = serializers.IntegerField(required=False)
    validation_fraction = serializers.FloatField(required=False)
    review_budget = serializers.FloatField(required=False, help_text="The share of in-scope traffic the in-scope score sends to review.")
    # default=None, not required=False: a form-encoded body that leaves a BooleanField out reads as
    # False in DRF, which would turn self-training off without anyone asking. None keeps mlcore's default.
    self_training = serializers.BooleanField(default=None, allow_null=True,
                                             help_text="Also train on serving's traffic samples, labeled by the run's first model (default true).")


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
