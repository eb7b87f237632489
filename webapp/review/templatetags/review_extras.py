"""What other pages show of the review queue: the index's summary, and a run page's live accuracy
(templates compose the apps, so the training app never imports this one)."""

from django import template

from webapp.review import selectors
from webapp.review.services import review_summary as _review_summary

register = template.Library()


@register.simple_tag
def review_summary():
    return _review_summary()


@register.simple_tag
def audit_estimate(model_version: str):
    """The audit estimate of one model version's accuracy on live traffic."""
    return selectors.audit_estimate(model_version=model_version)
