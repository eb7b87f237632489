from datetime import timezone as dt_timezone

from django.core.exceptions import ValidationError
from django.db.models import Count
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField
from rest_framework import viewsets

from webapp.labeling import services
from webapp.labeling.api.serializers import IntentSerializer, UtteranceSerializer
from webapp.labeling.models import Intent, Utterance


class IntentViewSet(viewsets.ModelViewSet):
    serializer_class = IntentSerializer
    queryset = Intent.objects.annotate(labeled_count=Count("utterances")).order_by("name")
    filterset_fields = ["is_active"]
    search_fields = ["name", "description"]
    ordering_fields = ["name", "labeled_count", "created_at"]

    def perform_create(self, serializer):
        intent = services.intent_create(**serializer.validated_data)
        intent.labeled_count = 0  # as the list's annotation would say: a new intent labels nothing yet
        serializer.instance = intent

    def perform_destroy(self, instance):
        services.intent_delete(intent=instance)


class UTCIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 time turned into UTC: PostgreSQL refuses offsets beyond ±15:59 that ISO allows."""

    def to_python(self, value):
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(dt_timezone.utc)
        except OverflowError:  # e.g. year 1 at +01:00 is before year 1 in UTC
            raise ValidationError("Enter a date and time between the years 1 and 9999 in UTC.", code="invalid") from None


class UTCIsoDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UTCIsoDateTimeField


class UtteranceFilter(filters.FilterSet):
    intent = filters.CharFilter(field_name="intent__name", help_text="Intent name.")
    labeled = filters.BooleanFilter(field_name="intent", lookup_expr="isnull", exclude=True)
    created_after = UTCIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Utterance
        fields = ["intent", "source", "labeled", "created_after", "created_before"]


class UtteranceViewSet(viewsets.ModelViewSet):
    serializer_class = UtteranceSerializer
    queryset = Utterance.objects.select_related("intent", "created_by", "updated_by")
    filterset_class = UtteranceFilter
    search_fields = ["text"]
    ordering_fields = ["created_at", "updated_at", "text"]

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = services.utterance_create(
            text=data["text"], intent=data.get("intent"), source=Utterance.Source.API, user=self.request.user,
        )

    def perform_update(self, serializer):
        data = serializer.validated_data
        services.utterance_update(
            utterance=serializer.instance, user=self.request.user,
            text=data.get("text"), intent=data["intent"] if "intent" in data else ...,
        )
