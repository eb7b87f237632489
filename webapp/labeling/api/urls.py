from rest_framework.routers import DefaultRouter

from webapp.labeling.api.views import IntentViewSet, UtteranceViewSet
from webapp.training.api.views import TrainingRunViewSet

router = DefaultRouter()
router.register("intents", IntentViewSet, basename="intent")
router.register("utterances", UtteranceViewSet, basename="utterance")
router.register("training-runs", TrainingRunViewSet, basename="training-run")
urlpatterns = router.urls
