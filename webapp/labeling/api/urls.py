from rest_framework.routers import DefaultRouter

from webapp.labeling.api.views import IntentViewSet, UtteranceViewSet

router = DefaultRouter()
router.register("intents", IntentViewSet, basename="intent")
router.register("utterances", UtteranceViewSet, basename="utterance")
urlpatterns = router.urls
