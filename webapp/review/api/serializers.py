"""The review-items API's bodies, for the OpenAPI schema. The event is validated by
``services.review_event_clean``, which the SQS drain and the log replay share with this API."""

from rest_framework import serializers

from webapp.labeling.models import MAX_TEXT_LENGTH
from webapp.review.models import ReviewItem
from webapp.review.services import INTENT_NAME_MAX_LENGTH, MAX_DISTRIBUTION_ENTRIES, MAX_REPORTED_PREDICTIONS, MODEL_VERSION_MAX_LENGTH


class DistributionEntrySerializer(serializers.Serializer):
    intent = serializers.CharField(max_length=INTENT_NAME_MAX_LENGTH, help_text="An intent of the model.")
    probability = serializers.FloatField(min_value=0, max_value=1)


class ReviewEventSerializer(serializers.Serializer):
    """A prediction the serving app was unsure of, as it sends it."""

    prediction_id = serializers.UUIDField(help_text="The prediction's id: the same id again stores nothing new.")
    text = serializers.CharField(max_length=MAX_TEXT_LENGTH, help_text=(
        "The classified text. Control characters are removed and whitespace collapsed before it is stored."))
    distribution = serializers.ListField(
        child=DistributionEntrySerializer(), min_length=1, max_length=MAX_DISTRIBUTION_ENTRIES,
        help_text="The probability of every intent; the three most likely are stored.")
    model_version = serializers.CharField(max_length=MODEL_VERSION_MAX_LENGTH, help_text="The model's version (its SHA-256 prefix).")
    threshold = serializers.FloatField(min_value=0, max_value=1, help_text="The threshold of the rule that sent it.")
    rule = serializers.ChoiceField(choices=ReviewItem.Rule.choices, required=False, default=ReviewItem.Rule.CONFIDENCE,
                                   help_text="Which figure the threshold applies to.")
    in_scope_score = serializers.FloatField(min_value=0, max_value=1, required=False, allow_null=True, default=None, help_text=(
        "The model's in-scope score (the share of its in-scope validation texts that looked less in scope); null without one."))
    time = serializers.DateTimeField(help_text="When the prediction was made (ISO 8601 with its UTC offset).")
    reason = serializers.ChoiceField(choices=ReviewItem.Reason.choices, required=False, default=ReviewItem.Reason.LOW_CONFIDENCE,
                                     help_text="Why serving sent it: below the threshold, or drawn for the audit sample.")


class ReviewItemReceiptSerializer(serializers.ModelSerializer):
    created = serializers.BooleanField(help_text="False when an item with this prediction id was already stored.")

    class Meta:
        model = ReviewItem
        fields = ["id", "prediction_id", "status", "created"]


class TrafficReportSerializer(serializers.Serializer):
    """The predictions one serving container counted for one model version and UTC day since its last report."""

    type = serializers.ChoiceField(choices=["traffic"], required=False, help_text="Always \"traffic\" (the SQS queue carries both kinds).")
    report_id = serializers.UUIDField(help_text="The report's id: the same id again stores nothing new.")
    day = serializers.DateField(help_text="The UTC day the predictions were made.")
    model_version = serializers.CharField(max_length=MODEL_VERSION_MAX_LENGTH)
    predictions = serializers.IntegerField(min_value=0, max_value=MAX_REPORTED_PREDICTIONS)
    low_confidence = serializers.IntegerField(min_value=0, max_value=MAX_REPORTED_PREDICTIONS, help_text="Below the threshold; at most predictions.")
    audited = serializers.IntegerField(min_value=0, max_value=MAX_REPORTED_PREDICTIONS, help_text="Sent as audit items; at most predictions.")


class TrafficReportReceiptSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    report_id = serializers.UUIDField()
    created = serializers.BooleanField(help_text="False when a report with this id was already stored.")


class TrafficSampleSerializer(serializers.Serializer):
    """A prediction serving answered with confidence, sent as a sample of the traffic (TRAFFIC_SAMPLE_RATE):
    training runs self-train on the most recent ones."""

    type = serializers.ChoiceField(choices=["sample"], required=False, help_text="Always \"sample\" (the SQS queue carries every kind).")
    prediction_id = serializers.UUIDField(help_text="The prediction's id: the same id again stores nothing new.")
    text = serializers.CharField()
    intent = serializers.CharField(max_length=100, help_text="What the serving model answered.")
    model_version = serializers.CharField(max_length=MODEL_VERSION_MAX_LENGTH)
    time = serializers.DateTimeField(help_text="When the prediction was made, with its UTC offset.")


class TrafficSampleReceiptSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    prediction_id = serializers.UUIDField()
    created = serializers.BooleanField(help_text="False when a sample with this prediction id was already stored.")
