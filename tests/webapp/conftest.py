import pytest


@pytest.fixture
def intents(intent_factory):
    """The intents review events name (tests.webapp_fixtures.review_event's distribution); modules
    that need other intents define their own."""
    return {name: intent_factory(name) for name in ("get_news", "play_music", "get_weather")}
