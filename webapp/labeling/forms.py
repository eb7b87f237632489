from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import ProhibitNullCharactersValidator

from mlcore.data import CLINC_SPLITS
from webapp.labeling import services
from webapp.labeling.import_reader import describe_size
from webapp.labeling.models import Intent, Utterance


class UtteranceTextField(forms.CharField):
    """An utterance's text, cleaned as every way in cleans it (``services.clean_text``): control
    characters, NUL included, are removed rather than refused, and the length is checked after."""

    def __init__(self, **kwargs):
        kwargs.pop("max_length", None)  # checked by clean_text, on the cleaned text
        super().__init__(**kwargs)
        self.validators = [v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)]

    def to_python(self, value):
        value = super().to_python(value)
        if value in self.empty_values:
            return value
        try:
            return services.clean_text(value)
        except ValidationError as exc:  # the service names the field; the form shows it on this one
            raise ValidationError(exc.messages) from None


class UtteranceAdminForm(forms.ModelForm):
    text = UtteranceTextField(widget=forms.Textarea(attrs={"class": "vLargeTextField"}))

    class Meta:
        model = Utterance
        fields = ["text", "intent", "is_held_out", "source"]

    def clean_text(self):
        text = self.cleaned_data["text"]
        try:
            services.utterance_check_unique(text, exclude_pk=self.instance.pk)
        except ValidationError as exc:
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
        # The upload handler stopped storing the file at the limit; its size is what was sent.
        if upload.size > settings.IMPORT_MAX_BYTES:
            raise ValidationError(f"The file is {describe_size(upload.size)}; the import limit is "
                                  f"{describe_size(settings.IMPORT_MAX_BYTES)} (IMPORT_MAX_BYTES): split it into smaller files.")
        return upload
