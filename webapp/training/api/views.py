from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, PermissionDenied
from rest_framework.response import Response

from webapp.training import services
from webapp.training.api.serializers import LaunchSerializer, PromoteSerializer, PromotionSerializer, TrainingRunSerializer
from webapp.training.models import Promotion, TrainingRun


class QueueUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "queue_unavailable"


class TrainingRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    queryset = TrainingRun.objects.select_related("snapshot", "created_by")
    serializer_class = TrainingRunSerializer
    filterset_fields = ["status"]
    ordering_fields = ["created_at"]

    @extend_schema(request=LaunchSerializer, responses={
        201: TrainingRunSerializer, 503: OpenApiResponse(description="The job queue cannot be reached; the run is recorded as failed."),
    })
    def create(self, request, *args, **kwargs):
        launch = LaunchSerializer(data=request.data)
        launch.is_valid(raise_exception=True)
        run = services.training_run_start(user=request.user, options=launch.validated_data)
        if run.status == TrainingRun.Status.FAILED:
            raise QueueUnavailable(run.error_message)
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=PromoteSerializer, responses={
        202: PromotionSerializer, 503: OpenApiResponse(description="The job queue cannot be reached; the promotion is recorded as failed."),
    })
    @action(detail=True, methods=["post"])
    def promote(self, request, pk=None):
        """Queue the promotion for a worker; follow it at /api/v1/promotions/{id}/."""
        if not request.user.has_perm("training.promote_trainingrun"):
            raise PermissionDenied("Promoting a model needs the ML engineer role.")
        body = PromoteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        promotion = services.model_promote_request(run=self.get_object(), user=request.user, override_reason=body.validated_data.get("override_reason", ""))
        if promotion.status == Promotion.Status.FAILED:
            raise QueueUnavailable(promotion.error_message)
        return Response(PromotionSerializer(promotion).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={200: TrainingRunSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        if not request.user.has_perm("training.change_trainingrun"):
            raise PermissionDenied("Cancelling a run needs the ML engineer role.")
        return Response(TrainingRunSerializer(services.training_run_cancel(run=self.get_object())).data)


class PromotionViewSet(viewsets.ReadOnlyModelViewSet):
    """Promotions, newest first: queued, running, succeeded (the latest is production) or failed with its reason."""

    queryset = Promotion.objects.select_related("promoted_by")
    serializer_class = PromotionSerializer
    filterset_fields = ["status", "run"]
