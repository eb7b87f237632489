from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db.models import Count, F, OuterRef, Subquery
from django.template.response import TemplateResponse
from django.utils.html import format_html_join

from webapp.review import services
from webapp.review.forms import LabelAsForm
from webapp.review.models import ReviewItem


class StatusFilter(admin.SimpleListFilter):
    """Pending items unless another status is chosen: the queue is what still needs a decision."""

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
        return queryset if value == "all" else queryset.filter(status=value)


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
    list_display = ("text", "copies", "predicted_intent", "confidence_display", "top_three", "margin_display", "model_version", "received_at", "status")
    list_filter = (StatusFilter, "predicted_intent", ConfidenceBandFilter, "model_version")
    search_fields = ("text",)
    ordering = ("confidence", "received_at")
    actions = ["accept_prediction", "label_as", "mark_out_of_scope", "dismiss"]
    readonly_fields = [f.name for f in ReviewItem._meta.fields]
    list_per_page = 100

    def has_add_permission(self, request):
        return False  # items come from the serving app

    def get_queryset(self, request):
        # One row per group of identical texts with the same status (its first item), with the group's size.
        group = ReviewItem.objects.filter(text_key=OuterRef("text_key"), status=OuterRef("status"))
        first = group.order_by("id").values("id")[:1]
        size = group.order_by().values("text_key").annotate(n=Count("id")).values("n")
        return super().get_queryset(request).annotate(group_first=Subquery(first), group_size=Subquery(size)).filter(id=F("group_first"))

    @admin.display(description="copies", ordering="group_size")
    def copies(self, item: ReviewItem) -> str:
        return f"×{item.group_size}"

    @admin.display(description="confidence", ordering="confidence")
    def confidence_display(self, item: ReviewItem) -> str:
        return f"{item.confidence:.3f}"

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
                resolved += action(item=item, user=request.user, **kwargs)
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
            **self.admin_site.each_context(request), "title": "Label as…", "form": form, "queryset": queryset,
            "opts": self.model._meta, "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/review/reviewitem/label_as.html", context)

    @admin.action(description="Out of scope", permissions=["change"])
    def mark_out_of_scope(self, request, queryset):
        self._apply(request, queryset, services.review_item_out_of_scope, "Marked out of scope:")

    @admin.action(description="Dismiss", permissions=["change"])
    def dismiss(self, request, queryset):
        self._apply(request, queryset, services.review_item_dismiss, "Dismissed")
