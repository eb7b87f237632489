from rest_framework import serializers

from webapp.labeling.models import MAX_TEXT_LENGTH, Intent, Utterance


class IntentSerializer(serializers.ModelSerializer):
    labeled_count = serializers.IntegerField(read_only=True, help_text="Labeled utterances of this intent.")

    class Meta:
        model = Intent
        fields = ["id", "name", "description", "is_active", "labeled_count", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]


class UtteranceSerializer(serializers.ModelSerializer):
    text = serializers.CharField(max_length=MAX_TEXT_LENGTH, trim_whitespace=True)
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
