from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html_join

from webapp.labeling.admin import action_confirmation_context
from webapp.review import charts, selectors, services
from webapp.review.forms import LabelAsForm
from webapp.review.models import ReviewItem, TrafficSample
from webapp.review.screen import LabelingScreen

# What the queue's order means, shown above it (REVIEW_STRATEGY; mlcore/review_strategy.py).
STRATEGY_HELP = {
    "balanced": "the least confident item of each predicted intent, then each intent's next one, and so on: "
                "labels spread over every intent the model struggles with",
    "confidence": "lowest confidence first",
    "margin": "smallest gap between the two most likely intents first",
}


class StatusFilter(admin.SimpleListFilter):
    """Pending items unless another status is chosen: the queue is what still needs a decision.

    It also groups the queue: one row per group of identical texts with the same status (its first item).
    """

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [*ReviewItem.Status.choices, ("all", "All")]

    def choices(self, changelist):
        current = self.value() or ReviewItem.Status.PENDING
        for value, label in self.lookup_choices:
            yield {"selected": current == value, "query_string": changelist.get_query_string({self.parameter_name: value}), "display": label}

    def queryset(self, request, queryset):
        value = self.value() or ReviewItem.Status.PENDING
        status = None if value == "all" else value
        queryset = queryset if status is None else queryset.filter(status=status)
        return queryset.filter(id__in=selectors.first_of_each_group(status, ReasonFilter.chosen(request)))


class ReasonFilter(admin.SimpleListFilter):
    """Low-confidence items unless the audit sample is chosen: the two are never mixed, since only
    the audit sample estimates live accuracy (the index and the Traffic page)."""

    title = "sent for"
    parameter_name = "reason"

    def lookups(self, request, model_admin):
        return [*ReviewItem.Reason.choices, ("all", "All")]

    @classmethod
    def chosen(cls, request) -> str | None:
        value = request.GET.get(cls.parameter_name) or ReviewItem.Reason.LOW_CONFIDENCE
        return None if value == "all" or value not in ReviewItem.Reason.values else value

    def choices(self, changelist):
        current = self.value() or ReviewItem.Reason.LOW_CONFIDENCE
        for value, label in self.lookup_choices:
            yield {"selected": current == value, "query_string": changelist.get_query_string({self.parameter_name: value}), "display": label}

    def queryset(self, request, queryset):
        reason = self.chosen(request)
        return queryset if reason is None else queryset.filter(reason=reason)


class ConfidenceBandFilter(admin.SimpleListFilter):
    title = "confidence"
    parameter_name = "confidence"
    BANDS = {"lt30": (0.0, 0.3), "30to50": (0.3, 0.5), "50to70": (0.5, 0.7), "ge70": (0.7, 1.01)}

    def lookups(self, request, model_admin):
        return [("lt30", "below 0.3"), ("30to50", "0.3 to 0.5"), ("50to70", "0.5 to 0.7"), ("ge70", "0.7 and above")]

    def queryset(self, request, queryset):
        if self.value() in self.BANDS:
            low, high = self.BANDS[self.value()]
            return queryset.filter(confidence__gte=low, confidence__lt=high)
        return queryset


@admin.register(ReviewItem)
class ReviewItemAdmin(admin.ModelAdmin):
    list_display = ("text", "copies", "predicted_intent", "confidence_display", "in_scope_display", "top_three", "margin_display", "model_version", "received_at", "status")
    list_filter = (ReasonFilter, StatusFilter, "predicted_intent", ConfidenceBandFilter, "model_version")
    search_fields = ("text",)
    actions = ["accept_prediction", "label_as", "mark_out_of_scope", "dismiss"]
    readonly_fields = [f.name for f in ReviewItem._meta.fields]
    list_per_page = 100
    # The unfiltered total would count items where the queue lists groups; it is one query less.
    show_full_result_count = False

    def has_add_permission(self, request):
        return False  # items come from the serving app

    def get_queryset(self, request):
        # With each group's size (StatusFilter keeps one item per group: an index lookup on
        # (status, group_key), made only for the rows shown unless sorting by it) and the queue's order.
        return selectors.with_queue_order(self.model._default_manager.get_queryset(), settings.REVIEW_STRATEGY)

    def get_ordering(self, request):
        return selectors.QUEUE_ORDERING[settings.REVIEW_STRATEGY]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "review_strategy": settings.REVIEW_STRATEGY,
                         "strategy_help": STRATEGY_HELP[settings.REVIEW_STRATEGY]}
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        traffic = path("traffic/", self.admin_site.admin_view(self.traffic_view), name="review_traffic")
        return [traffic, *LabelingScreen(self).urls(self.admin_site.admin_view), *super().get_urls()]

    def traffic_view(self, request):
        """Requests, low-confidence share and audit accuracy per day and model version."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        days = selectors.traffic_by_day(days=30)
        context = {
            **self.admin_site.each_context(request), "title": "Traffic", "opts": self.model._meta,
            "days": days, "chart_png": charts.traffic_chart(days) if days else None,
            "versions": selectors.audit_estimates(limit=10),
        }
        return TemplateResponse(request, "admin/review/traffic.html", context)

    @admin.display(description="copies", ordering="group_size")
    def copies(self, item: ReviewItem) -> str:
        return f"×{item.group_size}"

    @admin.display(description="confidence", ordering="confidence")
    def confidence_display(self, item: ReviewItem) -> str:
        return f"{item.confidence:.3f}"

    @admin.display(description="in scope", ordering="in_scope_score")
    def in_scope_display(self, item: ReviewItem) -> str:
        """The model's in-scope score: near 0, the text looked out of scope (a model without it: -)."""
        return "-" if item.in_scope_score is None else f"{item.in_scope_score:.3f}"

    @admin.display(description="margin", ordering="margin")
    def margin_display(self, item: ReviewItem) -> str:
        return f"{item.margin:.3f}"

    @admin.display(description="top three")
    def top_three(self, item: ReviewItem) -> str:
        return format_html_join(", ", "{} {}", ((entry["intent"], f"{entry['probability']:.2f}") for entry in item.top_intents))

    def _apply(self, request, queryset, action, verb: str, **kwargs) -> None:
        resolved, problems = 0, []
        for item in queryset:
            try:
                resolved += len(action(item=item, user=request.user, **kwargs))
            except ValidationError as exc:
                problems.extend(exc.messages)
        if resolved:
            self.message_user(request, f"{verb} {resolved} review item(s).", messages.SUCCESS)
        for problem in problems:
            self.message_user(request, problem, messages.ERROR)

    @admin.action(description="Accept prediction", permissions=["change"])
    def accept_prediction(self, request, queryset):
        self._apply(request, queryset, services.review_item_accept, "Accepted")

    @admin.action(description="Label as…", permissions=["change"])
    def label_as(self, request, queryset):
        form = LabelAsForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            self._apply(request, queryset, services.review_item_label, f"Labeled as {form.cleaned_data['intent']}:", intent=form.cleaned_data["intent"])
            return None
        context = {
            **self.admin_site.each_context(request), **action_confirmation_context(request, queryset),
            "title": "Label as…", "form": form, "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/review/reviewitem/label_as.html", context)

    @admin.action(description="Out of scope", permissions=["change"])
    def mark_out_of_scope(self, request, queryset):
        self._apply(request, queryset, services.review_item_out_of_scope, "Marked out of scope:")

    @admin.action(description="Dismiss", permissions=["change"])
    def dismiss(self, request, queryset):
        self._apply(request, queryset, services.review_item_dismiss, "Dismissed")


class DateHierarchyChangeList(ChangeList):
    """Django computes the end of the date hierarchy's chosen year, month or day by adding to its
    start: for the last ones the calendar has (year 9999, December 9999, 9999-12-31) that raised
    OverflowError or ValueError, a 500. Such a choice is now an invalid filter, as other impossible
    dates are (the list shows again without it)."""

    def get_filters(self, request):
        try:
            return super().get_filters(request)
        except (OverflowError, ValueError) as exc:
            raise IncorrectLookupParameters(exc) from exc


@admin.register(TrafficSample)
class TrafficSampleAdmin(admin.ModelAdmin):
    """Confidently answered traffic serving sent as a sample (TRAFFIC_SAMPLE_RATE): unlabeled texts
    that training runs self-train on. Read-only; delete what should not be trained on."""

    list_display = ("text", "predicted_intent", "model_version", "received_at")
    list_filter = ("model_version",)
    search_fields = ("text",)
    date_hierarchy = "received_at"
    readonly_fields = ("prediction_id", "text", "predicted_intent", "model_version", "predicted_at", "received_at")
    show_full_result_count = False

    def get_changelist(self, request, **kwargs):
        return DateHierarchyChangeList

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
