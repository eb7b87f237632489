from django import forms

from mlcore.config import DEVICES, TrainConfig

_DEFAULTS = TrainConfig()


class LaunchForm(forms.Form):
    base_model = forms.CharField(
        initial=_DEFAULTS.base_model, max_length=500,
        help_text="'default' is the offline all-MiniLM-L6-v2; also a hub id such as prajjwal1/bert-tiny, or a local model directory.",
    )
    device = forms.ChoiceField(choices=[(d, d) for d in DEVICES], initial=_DEFAULTS.device, help_text="auto uses CUDA when the worker has a GPU.")
    epochs = forms.IntegerField(initial=_DEFAULTS.epochs, min_value=1, max_value=1000)
    batch_size = forms.IntegerField(initial=_DEFAULTS.batch_size, min_value=1, max_value=4096)
    learning_rate = forms.FloatField(initial=_DEFAULTS.learning_rate, min_value=0)
    seed = forms.IntegerField(initial=_DEFAULTS.seed, min_value=0)
    max_length = forms.IntegerField(initial=_DEFAULTS.max_length, min_value=8, max_value=512)
    validation_fraction = forms.FloatField(initial=_DEFAULTS.validation_fraction, min_value=0, max_value=0.5)
    review_budget = forms.FloatField(
        initial=_DEFAULTS.review_budget, min_value=0, max_value=1, required=False,
        help_text="The share of in-scope traffic the model's in-scope score sends to review (reviewer hours); "
                  "the run page shows the out-of-scope recall it buys on the validation split.",
    )
    self_training = forms.BooleanField(
        initial=_DEFAULTS.self_training, required=False,
        help_text="Also train on the traffic samples serving sent (TRAFFIC_SAMPLE_RATE), labeled by the run's first model "
                  "where it is confident; kept only if it validates at least as well. 0.2 to 0.4 point of test accuracy on CLINC150 at 20% of the labels (mean of three seeds) (BENCHMARKS.md, 11).",
    )


class PromoteForm(forms.Form):
    override_reason = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Only needed when the gate refuses a model that is worse on the held-out set, or that has no held-out set; it is recorded.",
    )
