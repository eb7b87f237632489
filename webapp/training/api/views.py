from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from webapp.training import services
from webapp.training.api.serializers import LaunchSerializer, PromoteSerializer, PromotionSerializer, TrainingRunSerializer
from webapp.training.models import TrainingRun


class TrainingRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    queryset = TrainingRun.objects.select_related("snapshot", "created_by")
    serializer_class = TrainingRunSerializer
    filterset_fields = ["status"]
    ordering_fields = ["created_at"]

    @extend_schema(request=LaunchSerializer, responses={201: TrainingRunSerializer})
    def create(self, request, *args, **kwargs):
        launch = LaunchSerializer(data=request.data)
        launch.is_valid(raise_exception=True)
        run = services.training_run_start(user=request.user, options=launch.validated_data)
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=PromoteSerializer, responses={201: PromotionSerializer})
    @action(detail=True, methods=["post"])
    def promote(self, request, pk=None):
        if not request.user.has_perm("training.promote_trainingrun"):
            raise PermissionDenied("Promoting a model needs the ML engineer role.")
        body = PromoteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        promotion = services.model_promote(run=self.get_object(), user=request.user, override_reason=body.validated_data.get("override_reason", ""))
        return Response(PromotionSerializer(promotion).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: TrainingRunSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        if not request.user.has_perm("training.change_trainingrun"):
            raise PermissionDenied("Cancelling a run needs the ML engineer role.")
        return Response(TrainingRunSerializer(services.training_run_cancel(run=self.get_object())).data)
