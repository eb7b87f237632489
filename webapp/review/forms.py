from django import forms

from webapp.labeling.models import Intent


class LabelAsForm(forms.Form):
    intent = forms.ModelChoiceField(queryset=Intent.objects.filter(is_active=True), help_text="The intent these texts mean.")
