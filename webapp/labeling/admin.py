from __future__ import annotations

import io
import tempfile
from pathlib import Path

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from webapp.labeling import services
from webapp.labeling.forms import AssignIntentForm, ImportForm, UtteranceAdminForm
from webapp.labeling.models import Intent, Utterance


@admin.register(Intent)
class IntentAdmin(admin.ModelAdmin):
    list_display = ("name", "description", "is_active", "labeled_examples")
    list_filter = ("is_active",)
    search_fields = ("name", "description")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(labeled_count=Count("utterances"))

    @admin.display(description="Labeled utterances", ordering="labeled_count")
    def labeled_examples(self, obj: Intent) -> str:
        minimum = settings.MIN_EXAMPLES_PER_INTENT
        if obj.labeled_count < minimum:
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

    def get_urls(self):
        custom = [path("import/", self.admin_site.admin_view(self.import_view), name="labeling_utterance_import")]
        return custom + super().get_urls()

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
            "title": "Assign an intent",
            "form": form,
            "queryset": queryset,
            "count": queryset.count(),
            "opts": self.model._meta,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
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
