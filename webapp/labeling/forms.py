from django import forms
from django.core.exceptions import ValidationError

from mlcore.data import CLINC_SPLITS
from webapp.labeling import services
from webapp.labeling.models import Intent, Utterance


class UtteranceAdminForm(forms.ModelForm):
    class Meta:
        model = Utterance
        fields = ["text", "intent", "is_held_out", "source"]

    def clean_text(self):
        try:
            text = services.clean_text(self.cleaned_data["text"])
            services.utterance_check_unique(text, exclude_pk=self.instance.pk)
        except ValidationError as exc:  # the service names the field; the form shows it on this one
            raise ValidationError(exc.messages) from None
        return text


class AssignIntentForm(forms.Form):
    intent = forms.ModelChoiceField(queryset=Intent.objects.filter(is_active=True), help_text="The label for every selected utterance.")


class ImportForm(forms.Form):
    file = forms.FileField(help_text="CSV with a header 'text,intent', JSONL with {\"text\", \"intent\"} objects, or a CLINC150 JSON file.")
    splits = forms.MultipleChoiceField(
        choices=[(s, s) for s in CLINC_SPLITS], initial=["train"], required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="For CLINC150 files only: the splits to import. Rows of test and oos_test are held out for evaluation.",
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if not upload.name.lower().endswith((".csv", ".jsonl", ".ndjson", ".json")):
            raise ValidationError("Upload a .csv, .jsonl or CLINC150 .json file.")
        return upload
