from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import BooleanField, ExpressionWrapper, F, Q, Subquery
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from mlcore.evaluate import headline
from webapp.labeling.admin import require_pk
from webapp.training import charts, services
from webapp.training.forms import LaunchForm, PromoteForm
from webapp.training.models import DatasetSnapshot, Promotion, TrainingRun


METRIC_LABELS = [
    ("examples", "examples"), ("accuracy", "accuracy"), ("macro_f1", "macro-F1"),
    ("ece_uncalibrated", "ECE before calibration"), ("ece", "ECE after calibration"),
    # "in_scope_score" (the share of in-scope validation texts that looked less in scope) or "confidence".
    ("rule", "review rule"), ("threshold", "review threshold"),
    ("in_scope_review_rate", "in-scope sent to review"), ("oos_recall", "out-of-scope recall"), ("oos_auroc", "out-of-scope AUROC"),
]


def run_progress(run: TrainingRun) -> dict:
    """What the run page polls: status, progress, timing and the log tail."""
    now = timezone.now()
    end = run.finished_at or now
    elapsed = (end - run.started_at).total_seconds() if run.started_at else 0.0
    remaining = None
    if run.status == TrainingRun.Status.RUNNING and run.step and run.total_steps:
        remaining = elapsed * (run.total_steps - run.step) / run.step
    return {
        "id": run.pk, "status": run.status, "finished": run.is_finished, "step": run.step, "total_steps": run.total_steps,
        "epoch": run.epoch, "progress": round(run.progress, 4), "latest_metrics": run.latest_metrics,
        "elapsed_seconds": round(elapsed, 1), "remaining_seconds": None if remaining is None else round(remaining, 1),
        "device_requested": run.requested_device, "device_used": run.device_used, "cancel_requested": run.cancel_requested,
        "error_message": run.error_message, "log_tail": run.log_tail, "unclaimed_hint": services.training_run_unclaimed_hint(run=run),
        "promotions_pending": run.promotions.filter(status__in=[Promotion.Status.QUEUED, Promotion.Status.RUNNING]).count(),
    }


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("__str__", "status", "progress_bar", "device_used", "heldout_accuracy", "created_by", "created_at", "production")
    list_filter = ("status",)
    list_select_related = ("created_by",)
    change_list_template = "admin/training/trainingrun/change_list.html"

    def has_add_permission(self, request):
        return False  # runs are launched from the "Launch retraining" page, not the generic add form

    def get_queryset(self, request):
        # The production run, looked up once in the query rather than once per listed row.
        latest = Promotion.objects.filter(status=Promotion.Status.SUCCEEDED).order_by("-promoted_at", "-id").values("run_id")[:1]
        return super().get_queryset(request).annotate(
            production_run=Subquery(latest),
            is_production=ExpressionWrapper(Q(pk=F("production_run")), output_field=BooleanField()),
        )

    def has_launch_permission(self, request) -> bool:
        return request.user.has_perm("training.add_trainingrun")

    def changelist_view(self, request, extra_context=None):
        # Runs of dead workers are failed by the scheduled sweep, not by whoever opens this page.
        context = {"can_launch": self.has_launch_permission(request), **(extra_context or {})}
        return super().changelist_view(request, extra_context=context)

    @admin.display(description="progress")
    def progress_bar(self, run: TrainingRun) -> str:
        return format_html('<progress value="{}" max="1"></progress> {}%', run.progress, round(run.progress * 100))

    @admin.display(description="held-out accuracy")
    def heldout_accuracy(self, run: TrainingRun) -> str:
        report = run.heldout_report
        return f"{report['accuracy']:.4f}" if report else "-"

    @admin.display(description="in production", boolean=True)
    def production(self, run: TrainingRun) -> bool:
        return bool(run.is_production)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("launch/", wrap(self.launch_view), name="training_trainingrun_launch"),
            path("<int:run_id>/progress/", wrap(self.progress_view), name="training_trainingrun_progress"),
            path("<int:run_id>/cancel/", wrap(require_POST(self.cancel_view)), name="training_trainingrun_cancel"),
            path("<int:run_id>/promote/", wrap(require_POST(self.promote_view)), name="training_trainingrun_promote"),
        ] + super().get_urls()

    def launch_view(self, request):
        if not self.has_launch_permission(request):
            raise PermissionDenied
        form = LaunchForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                run = services.training_run_start(user=request.user, options=form.cleaned_data)
            except ValidationError as exc:
                for message in exc.messages:
                    form.add_error(None, message)
            else:
                if run.status == TrainingRun.Status.FAILED:
                    self.message_user(request, run.error_message, messages.ERROR)
                else:
                    self.message_user(request, f"Run #{run.pk} is queued; it starts when a worker is free.", messages.SUCCESS)
                return redirect(reverse("admin:training_trainingrun_change", args=[run.pk]))
        context = {**self.admin_site.each_context(request), "title": "Launch retraining", "form": form, "opts": self.model._meta,
                   "heldout_count": services.heldout_count()}
        return TemplateResponse(request, "admin/training/trainingrun/launch.html", context)

    def progress_view(self, request, run_id: int):
        if not self.has_view_permission(request):
            raise PermissionDenied
        return JsonResponse(run_progress(get_object_or_404(TrainingRun, pk=run_id)))

    def cancel_view(self, request, run_id: int):
        if not self.has_change_permission(request):
            raise PermissionDenied
        run = get_object_or_404(TrainingRun, pk=run_id)
        try:
            run = services.training_run_cancel(run=run)
            self.message_user(request, f"Run #{run.pk}: {'cancelled' if run.is_finished else 'stopping after the current step'}.", messages.SUCCESS)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
        return redirect(reverse("admin:training_trainingrun_change", args=[run_id]))

    def promote_view(self, request, run_id: int):
        if not request.user.has_perm("training.promote_trainingrun"):
            raise PermissionDenied
        run = get_object_or_404(TrainingRun, pk=run_id)
        form = PromoteForm(request.POST)
        form.is_valid()
        try:
            promotion = services.model_promote_request(run=run, user=request.user, override_reason=form.cleaned_data.get("override_reason", ""))
        except ValidationError as exc:
            self.message_user(request, "Not promoted: " + " ".join(exc.messages), messages.ERROR)
        else:
            if promotion.status == Promotion.Status.FAILED:
                self.message_user(request, f"Not promoted: {promotion.error_message}", messages.ERROR)
            else:
                self.message_user(request, f"Promotion #{promotion.pk} of run #{run.pk} is queued; this page shows when serving has it.", messages.SUCCESS)
        return redirect(reverse("admin:training_trainingrun_change", args=[run_id]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # An id that is no number (a mistyped or edited address) is a run that does not exist, a 404
        # as on Django's own pages; looked up as given, it raised ValueError, a 500.
        pk = require_pk(TrainingRun, unquote(object_id))
        run = get_object_or_404(TrainingRun.objects.select_related("snapshot", "created_by"), pk=pk)
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        current = services.promoted_run()
        promotions = list(run.promotions.select_related("promoted_by").order_by("-requested_at", "-id"))
        report = run.heldout_report or run.validation_report
        context = {
            **self.admin_site.each_context(request),
            "title": f"Training run #{run.pk}",
            "opts": self.model._meta,
            "run": run,
            "progress": run_progress(run),
            "snapshot": run.snapshot,
            "config": run.config,
            "report_name": "held-out set" if run.heldout_report else "validation split",
            "report": report,
            "headlines": {name: headline(r) for name, r in (("validation", run.validation_report), ("held-out", run.heldout_report)) if r},
            "per_intent": sorted(report["per_intent"], key=lambda row: (row["f1"], row["intent"])) if report else [],
            "confusion_png": charts.confusion_heatmap(report["confusion_matrix"], [r["intent"] for r in report["per_intent"]]) if report else None,
            # The coverage curve is the probability's: its threshold line is the probability rule's.
            "coverage_png": charts.coverage_curve(report["coverage"], report.get("confidence_rule", report)["threshold"]) if report else None,
            "current": current,
            "current_headline": headline(current.heldout_report) if current and current.heldout_report else None,
            "is_current": bool(current and current.pk == run.pk),
            "promotions": promotions,
            "promotions_pending": any(not p.is_finished for p in promotions),
            "can_cancel": self.has_change_permission(request) and not run.is_finished,
            "can_promote": request.user.has_perm("training.promote_trainingrun") and run.status == TrainingRun.Status.SUCCEEDED,
            "promote_form": PromoteForm(),
            "metric_labels": METRIC_LABELS,
        }
        return TemplateResponse(request, "admin/training/trainingrun/run.html", context)


@admin.register(DatasetSnapshot)
class DatasetSnapshotAdmin(admin.ModelAdmin):
    list_display = ("__str__", "fingerprint", "train_count", "heldout_count", "created_at")
    readonly_fields = [f.name for f in DatasetSnapshot._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Promotion)
class PromotionAdmin(admin.ModelAdmin):
    list_display = ("__str__", "status", "promoted_by", "requested_at", "promoted_at", "heldout_accuracy", "previous_run",
                    "previous_heldout_accuracy", "override_reason", "error_message")
    list_filter = ("status",)
    list_select_related = ("run", "previous_run", "promoted_by")
    readonly_fields = [f.name for f in Promotion._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
