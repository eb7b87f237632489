from django.urls import path
from rest_framework.routers import DefaultRouter

from webapp.labeling.api.views import IntentViewSet, UtteranceViewSet
from webapp.review.api.views import ReviewItemIngestView, TrafficReportIngestView, TrafficSampleIngestView
from webapp.training.api.views import PromotionViewSet, TrainingRunViewSet


class Router(DefaultRouter):
    """Any path segment reaches the view, so that an id that is not a number is the API's JSON 404,
    not the URL resolver's HTML page (DRF's default segment pattern stops at a dot)."""

    def get_lookup_regex(self, viewset, lookup_prefix=""):
        return super().get_lookup_regex(viewset, lookup_prefix).replace("[^/.]+", "[^/]+")


router = Router()
router.register("intents", IntentViewSet, basename="intent")
router.register("utterances", UtteranceViewSet, basename="utterance")
router.register("training-runs", TrainingRunViewSet, basename="training-run")
router.register("promotions", PromotionViewSet, basename="promotion")
urlpatterns = [
    path("review-items/", ReviewItemIngestView.as_view(), name="review-items"),
    path("traffic-reports/", TrafficReportIngestView.as_view(), name="traffic-reports"),
    path("traffic-samples/", TrafficSampleIngestView.as_view(), name="traffic-samples"),
    *router.urls,
]
