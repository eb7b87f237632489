from django.urls import path
from rest_framework.routers import DefaultRouter

from webapp.labeling.api.views import IntentViewSet, UtteranceViewSet
from webapp.review.api.views import ReviewItemIngestView
from webapp.training.api.views import TrainingRunViewSet

router = DefaultRouter()
router.register("intents", IntentViewSet, basename="intent")
router.register("utterances", UtteranceViewSet, basename="utterance")
router.register("training-runs", TrainingRunViewSet, basename="training-run")
urlpatterns = [path("review-items/", ReviewItemIngestView.as_view(), name="review-items"), *router.urls]
