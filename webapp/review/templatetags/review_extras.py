from django import template

from webapp.review.services import review_summary as _review_summary

register = template.Library()


@register.simple_tag
def review_summary():
    return _review_summary()
