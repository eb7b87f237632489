from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.api.parsers import JSONParser
from webapp.api.schema import ErrorDetailSerializer
from webapp.review import services
from webapp.review.api.serializers import (
    ReviewEventSerializer, ReviewItemReceiptSerializer, TrafficReportReceiptSerializer, TrafficReportSerializer,
    TrafficSampleReceiptSerializer, TrafficSampleSerializer,
)


class CanReportReviewItems(IsAuthenticated):
    message = "This token may not post review items."

    def has_permission(self, request, view):
        return super().has_permission(request, view) and request.user.has_perm("review.add_reviewitem")


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"


def _ingest_schema(request, receipt, duplicate: str):
    return extend_schema(request=request, responses={
        201: receipt,
        200: OpenApiResponse(receipt, description=duplicate),
        413: OpenApiResponse(ErrorDetailSerializer, description="The body is larger than REVIEW_MAX_BODY_BYTES."),
        415: OpenApiResponse(ErrorDetailSerializer, description="The body is not application/json."),
    })


class _ServingIngestView(APIView):
    """What the serving app posts (REVIEW_SINK=http): stored once per id, 201 the first time, 200 after."""

    permission_classes = [CanReportReviewItems]
    parser_classes = [JSONParser]  # what the serving app sends; a form body could not hold the distribution

    def ingest(self, data) -> tuple[dict, bool]:
        raise NotImplementedError

    def post(self, request):
        _refuse_large_bodies(request)
        # A ValidationError becomes 400 with the field messages (the API's exception handler).
        body, created = self.ingest(request.data)
        return Response({**body, "created": created}, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


@extend_schema_view(post=_ingest_schema(ReviewEventSerializer, ReviewItemReceiptSerializer, "An item with this prediction id was already stored."))
class ReviewItemIngestView(_ServingIngestView):
    """Where the serving app posts unsure predictions and audit samples."""

    def ingest(self, data) -> tuple[dict, bool]:
        item, created = services.review_item_ingest(event=data)
        return {"id": item.pk, "prediction_id": str(item.prediction_id), "status": item.status}, created


@extend_schema_view(post=_ingest_schema(TrafficReportSerializer, TrafficReportReceiptSerializer, "A report with this id was already stored."))
class TrafficReportIngestView(_ServingIngestView):
    """Where the serving app posts its prediction counts (the Traffic page)."""

    def ingest(self, data) -> tuple[dict, bool]:
        report, created = services.traffic_report_ingest(report=data)
        return {"id": report.pk, "report_id": str(report.report_id)}, created


@extend_schema_view(post=_ingest_schema(TrafficSampleSerializer, TrafficSampleReceiptSerializer, "A sample with this prediction id was already stored."))
class TrafficSampleIngestView(_ServingIngestView):
    """Where the serving app posts its samples of confidently answered traffic (self-training)."""

    def ingest(self, data) -> tuple[dict, bool]:
        sample, created = services.traffic_sample_ingest(sample=data)
        return {"id": sample.pk, "prediction_id": str(sample.prediction_id)}, created


def _refuse_large_bodies(request) -> None:
    """Refused before the body is read: a sender cannot make the server parse megabytes of JSON."""
    length = _content_length(request)
    if length > settings.REVIEW_MAX_BODY_BYTES:
        raise RequestTooLarge(f"The body has {length} bytes; a review event may have at most {settings.REVIEW_MAX_BODY_BYTES} "
                              "(REVIEW_MAX_BODY_BYTES).")


def _content_length(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:  # Django then reads no body at all
        return 0
