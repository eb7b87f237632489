"""The review-items API's bodies, for the OpenAPI schema. The event is validated by
``services.review_event_clean``, which the SQS drain and the log replay share with this API."""

from rest_framework import serializers

from webapp.labeling.models import MAX_TEXT_LENGTH
from webapp.review.models import ReviewItem
from webapp.review.services import INTENT_NAME_MAX_LENGTH, MAX_DISTRIBUTION_ENTRIES, MODEL_VERSION_MAX_LENGTH


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
    threshold = serializers.FloatField(min_value=0, max_value=1, help_text="The confidence threshold the prediction was below.")
    time = serializers.DateTimeField(help_text="When the prediction was made (ISO 8601; UTC when no offset is given).")


class ReviewItemReceiptSerializer(serializers.ModelSerializer):
    created = serializers.BooleanField(help_text="False when an item with this prediction id was already stored.")

    class Meta:
        model = ReviewItem
        fields = ["id", "prediction_id", "status", "created"]
