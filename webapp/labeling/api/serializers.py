from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import ProhibitNullCharactersValidator
from rest_framework import serializers

from webapp.labeling import services
from webapp.labeling.models import MAX_TEXT_LENGTH, Intent, Utterance


class UtteranceTextField(serializers.CharField):
    """An utterance's text, cleaned as every way in cleans it (``services.clean_text``): control
    characters, NUL included, are removed rather than refused; the length is checked once cleaned."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.validators = [v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)]

    def to_internal_value(self, data):
        try:
            return services.clean_text(super().to_internal_value(data))
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None


class IntentSerializer(serializers.ModelSerializer):
    labeled_count = serializers.IntegerField(read_only=True, help_text="Labeled utterances of this intent.")

    class Meta:
        model = Intent
        fields = ["id", "name", "description", "is_active", "labeled_count", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]


class UtteranceSerializer(serializers.ModelSerializer):
    # max_length is for the schema; clean_text enforces the same bound on the cleaned text.
    text = UtteranceTextField(max_length=MAX_TEXT_LENGTH, trim_whitespace=True)
    intent = serializers.SlugRelatedField(
        slug_field="name", queryset=Intent.objects.all(), allow_null=True, required=False,
        help_text="The intent's name, or null for an unlabeled utterance.",
    )
    created_by = serializers.StringRelatedField()
    updated_by = serializers.StringRelatedField()

    class Meta:
        model = Utterance
        fields = ["id", "text", "intent", "source", "created_by", "updated_by", "created_at", "updated_at"]
        read_only_fields = ["source", "created_at", "updated_at"]
