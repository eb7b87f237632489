from django import template

register = template.Library()


@register.filter
def get_item(mapping, key):
    return (mapping or {}).get(key)


@register.filter
def metric(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return value


@register.filter
def percent_points(value):
    """A share as points: 0.003 -> "0.3 points"."""
    return "-" if value is None else f"{value * 100:.1f} points"
