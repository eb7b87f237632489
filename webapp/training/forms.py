from django import forms
from django.utils.html import escape

from mlcore.config import Option, TrainConfig


class LaunchForm(forms.Form):
    """The options TrainConfig lets a launch set, as it declares them (TrainConfig.options("launch")).

    A field left blank keeps mlcore's default. The bounds are TrainConfig's, for the browser and a
    message beside the field; TrainConfig makes the final check (services.training_config_build)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields.update({declared.name: _launch_field(declared) for declared in TrainConfig.options("launch")})


def _launch_field(declared: Option) -> forms.Field:
    # Django renders help_text as HTML: the text is escaped here.
    common = {"required": False, "initial": declared.default, "help_text": escape(declared.help)}
    if declared.type is bool:
        return forms.BooleanField(**common)
    if declared.choices:
        return forms.ChoiceField(choices=[(choice, choice) for choice in declared.choices], **common)
    if declared.type is int:
        return forms.IntegerField(min_value=declared.min, max_value=declared.max, **common)
    if declared.type is float:
        return forms.FloatField(min_value=declared.min, max_value=declared.max, **common)
    return forms.CharField(max_length=declared.max_chars, **common)


class PromoteForm(forms.Form):
    override_reason = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Only needed when the gate refuses a model that is worse on the held-out set, or that has no held-out set; it is recorded.",
    )
