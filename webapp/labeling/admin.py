from __future__ import annotations

import io
import tempfile
from pathlib import Path

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.contrib.admin.widgets import AutocompleteSelect, RelatedFieldWidgetWrapper
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import Http404, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from mlcore.data import OOS_LABEL
from webapp.labeling import services
from webapp.labeling.forms import AssignIntentForm, ImportForm, UtteranceAdminForm
from webapp.labeling.models import Intent, Utterance

# How many selected rows a confirmation page lists; it counts the rest.
PREVIEW_ROWS = 20


def action_confirmation_context(request, queryset) -> dict:
    """What an action's confirmation page shows and posts back, whatever the size of the selection.

    It posts back the selection the changelist posted, not one hidden field per selected row: with
    "select all N" chosen, that is ``select_across`` and the ids of one page (Django applies the action
    to every row of the changelist's filters, which stay in the URL the form posts to), so thousands of
    rows never exceed DATA_UPLOAD_MAX_NUMBER_FIELDS.
    """
    count = queryset.count()
    return {
        "count": count,
        "preview": queryset[:PREVIEW_ROWS],
        "not_previewed": max(count - PREVIEW_ROWS, 0),
        "selected_ids": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "changelist_url": request.get_full_path(),
    }


def require_pk(model, value: str):
    """``value`` as ``model``'s primary key; Http404 when it cannot be one (the database would refuse it)."""
    try:
        return model._meta.pk.to_python(value)
    except ValidationError:
        raise Http404(f"No {model._meta.verbose_name} with the id {value[:40]!r}.") from None


class IntentAutocomplete(AutocompleteSelect):
    """The admin's intent autocomplete, for the list's rows: the page carries only each row's own
    intent, and the others are searched as the labeler types. Django's widget would read each row's
    intent with a query of its own; this one finds its name among the intents read once per page."""

    def __init__(self, field, admin_site, *, intent_names: dict[str, str]):
        super().__init__(field, admin_site)
        self.intent_names = intent_names

    def optgroups(self, name, value, attr=None):
        options = [] if self.is_required else [self.create_option(name, "", "", False, 0)]
        chosen = [str(v) for v in value if str(v) in self.intent_names]
        options += [self.create_option(name, pk, self.intent_names[pk], True, index) for index, pk in enumerate(chosen, 1)]
        return [(None, options, 0)]


@admin.register(Intent)
class IntentAdmin(admin.ModelAdmin):
    list_display = ("name", "description", "is_active", "labeled_examples")
    list_filter = ("is_active",)
    search_fields = ("name", "description")
    # Explicit: the model's ordering does not apply to the annotated (grouped) queryset, which the
    # autocomplete of the utterance list pages through.
    ordering = ("name",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(labeled_count=Count("utterances"))

    @admin.display(description="Labeled utterances", ordering="labeled_count")
    def labeled_examples(self, obj: Intent) -> str:
        minimum = settings.MIN_EXAMPLES_PER_INTENT
        if obj.labeled_count < minimum and obj.name != OOS_LABEL:  # training needs no minimum of out-of-scope texts
            return format_html(
                '<span class="too-few-examples" style="color:#ba2121;font-weight:bold" '
                'title="Training needs at least {} examples per intent">&#9888; {} (fewer than {})</span>',
                minimum, obj.labeled_count, minimum,
            )
        return str(obj.labeled_count)


class LabeledFilter(admin.SimpleListFilter):
    title = "labeled"
    parameter_name = "labeled"

    def lookups(self, request, model_admin):
        return [("yes", "Labeled"), ("no", "Unlabeled")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(intent__isnull=self.value() == "no")
        return queryset


@admin.register(Utterance)
class UtteranceAdmin(SimpleHistoryAdmin):
    form = UtteranceAdminForm
    list_display = ("text", "intent", "is_held_out", "source", "created_by", "updated_by", "created_at")
    list_display_links = ("text",)
    list_editable = ("intent", "is_held_out")
    list_filter = ("intent", "source", LabeledFilter, "is_held_out", ("created_at", admin.DateFieldListFilter))
    list_select_related = ("intent", "created_by", "updated_by")
    search_fields = ("text",)
    readonly_fields = ("created_by", "updated_by", "created_at", "updated_at")
    actions = ["assign_intent", "clear_label", "hold_out", "use_for_training", "export_csv", "export_jsonl"]
    change_list_template = "admin/labeling/utterance/change_list.html"
    list_per_page = 100

    def save_model(self, request, obj, form, change):
        services.utterance_save(utterance=obj, user=request.user)

    def get_changelist_formset(self, request, **kwargs):
        # Every row of the list edits its intent. A plain select would repeat all the intents in every
        # row (and Django would query them once per row); the autocomplete carries one, and the intents'
        # names are read once. Without the add/change/delete links of the wrapper, repeated on every row.
        intent_names = {str(pk): name for pk, name in Intent.objects.values_list("pk", "name")}

        def formfield(db_field, **field_kwargs):
            if db_field.name == "intent":
                field_kwargs["widget"] = IntentAutocomplete(db_field, self.admin_site, intent_names=intent_names)
            field = self.formfield_for_dbfield(db_field, request, **field_kwargs)
            if isinstance(field.widget, RelatedFieldWidgetWrapper):
                field.widget = field.widget.widget
            return field

        return super().get_changelist_formset(request, formfield_callback=formfield, **kwargs)

    def get_urls(self):
        custom = [path("import/", self.admin_site.admin_view(self.import_view), name="labeling_utterance_import")]
        return custom + super().get_urls()

    # simple_history looks the ids of its history pages up as they come in the URL: one that is no
    # number (a mistyped or edited address) raised ValueError, a 500. Django's own pages treat such
    # an id as an object that does not exist; so do these (404).
    def history_view(self, request, object_id, extra_context=None):
        require_pk(Utterance, unquote(object_id))
        return super().history_view(request, object_id, extra_context)

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        require_pk(Utterance, unquote(object_id))
        require_pk(Utterance.history.model, version_id)
        return super().history_form_view(request, object_id, version_id, extra_context)

    @admin.action(description="Assign intent…", permissions=["change"])
    def assign_intent(self, request, queryset):
        if "apply" in request.POST:
            form = AssignIntentForm(request.POST)
            if form.is_valid():
                count = services.utterances_assign_intent(utterances=queryset, intent=form.cleaned_data["intent"], user=request.user)
                self.message_user(request, f"Labeled {count} utterance(s) as {form.cleaned_data['intent']}.", messages.SUCCESS)
                return None
        else:
            form = AssignIntentForm()
        context = {
            **self.admin_site.each_context(request),
            **action_confirmation_context(request, queryset),
            "title": "Assign an intent",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/labeling/utterance/assign_intent.html", context)

    @admin.action(description="Clear label", permissions=["change"])
    def clear_label(self, request, queryset):
        count = services.utterances_clear_label(utterances=queryset, user=request.user)
        self.message_user(request, f"Cleared the label of {count} utterance(s).", messages.SUCCESS)

    @admin.action(description="Hold out for evaluation", permissions=["change"])
    def hold_out(self, request, queryset):
        count = services.utterances_set_held_out(utterances=queryset, held_out=True, user=request.user)
        self.message_user(request, f"{count} utterance(s) held out for evaluation; training will not see them.", messages.SUCCESS)

    @admin.action(description="Use for training (stop holding out)", permissions=["change"])
    def use_for_training(self, request, queryset):
        count = services.utterances_set_held_out(utterances=queryset, held_out=False, user=request.user)
        self.message_user(request, f"{count} utterance(s) returned to the training data.", messages.SUCCESS)

    @admin.action(description="Export selected as CSV", permissions=["view"])
    def export_csv(self, request, queryset):
        return self._export(queryset, "csv", "text/csv")

    @admin.action(description="Export selected as JSONL", permissions=["view"])
    def export_jsonl(self, request, queryset):
        return self._export(queryset, "jsonl", "application/jsonl")

    def _export(self, queryset, fmt: str, content_type: str) -> HttpResponse:
        buffer = io.StringIO()
        services.utterances_export(utterances=queryset, fmt=fmt, stream=buffer)
        response = HttpResponse(buffer.getvalue(), content_type=f"{content_type}; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="utterances.{fmt}"'
        return response

    def import_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        report = None
        form = ImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            with tempfile.TemporaryDirectory() as folder:
                target = Path(folder) / Path(upload.name).name
                with target.open("wb") as handle:
                    for chunk in upload.chunks():
                        handle.write(chunk)
                try:
                    report = services.utterances_import(path=target, user=request.user, splits=form.cleaned_data["splits"] or ["train"])
                except ValidationError as exc:
                    for message in exc.messages:
                        form.add_error("file", message)
            if report is not None:
                level = messages.SUCCESS if report.written else messages.ERROR
                self.message_user(request, report.summary(), level)
        context = {
            **self.admin_site.each_context(request),
            "title": "Import utterances",
            "form": form,
            "report": report,
            "opts": self.model._meta,
            "changelist_url": reverse("admin:labeling_utterance_changelist"),
        }
        return TemplateResponse(request, "admin/labeling/utterance/import.html", context)
