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
