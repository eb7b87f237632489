from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.review import services


class CanReportReviewItems(IsAuthenticated):
    message = "This token may not post review items."

    def has_permission(self, request, view):
        return super().has_permission(request, view) and request.user.has_perm("review.add_reviewitem")


class ReviewItemIngestView(APIView):
    """Where the serving app posts low-confidence predictions (REVIEW_SINK=http)."""

    permission_classes = [CanReportReviewItems]

    @extend_schema(request=OpenApiTypes.OBJECT, responses={201: OpenApiTypes.OBJECT, 200: OpenApiTypes.OBJECT})
    def post(self, request):
        # A ValidationError becomes 400 with the field messages (the API's exception handler).
        item, created = services.review_item_ingest(event=request.data)
        body = {"id": item.pk, "prediction_id": str(item.prediction_id), "status": item.status, "created": created}
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
