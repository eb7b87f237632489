"""The labeling screen: the review queue one group at a time, decided from the keyboard.

The page (``admin/review/label.html``, with its small inline script) asks for the next group,
shows it, and posts each decision; the views here are thin and call the services. Answers are JSON: a
decision someone else made meanwhile is a 409 with a sentence, a bad request a 400 with one.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, JsonResponse
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET, require_POST

from webapp.labeling.models import Intent
from webapp.middleware import has_nul
from webapp.review import selectors, services
from webapp.review.models import ReviewItem

SKIPPED_SESSION_KEY = "review_screen_skipped"  # the groups this reviewer skipped in this sitting


def _filters(params) -> services.QueueFilters:
    reason = params.get("reason") or ReviewItem.Reason.LOW_CONFIDENCE
    return services.QueueFilters(predicted_intent=params.get("predicted_intent", "")[:100], model_version=params.get("model_version", "")[:64],
                                 reason=None if reason == "all" or reason not in ReviewItem.Reason.values else reason)


def _remaining(filters: services.QueueFilters) -> int:
    return selectors.pending_groups(predicted_intent=filters.predicted_intent, model_version=filters.model_version,
                                    reason=filters.reason).count()


def _body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise ValidationError({"body": "must be a JSON object."}) from None
    if not isinstance(body, dict):
        raise ValidationError({"body": "must be a JSON object."})
    if has_nul(body):  # PostgreSQL cannot compare a text with one: no key, intent or group holds it
        raise ValidationError({"body": "must not hold a NUL character (\\u0000)."})
    return body


def _error(exc: Exception) -> JsonResponse:
    if isinstance(exc, services.DecisionConflict):
        return JsonResponse({"error": str(exc)}, status=409)
    return JsonResponse({"error": " ".join(exc.messages), "fields": getattr(exc, "message_dict", {})}, status=400)


class LabelingScreen:
    def __init__(self, model_admin) -> None:
        self.model_admin = model_admin

    def _check(self, request: HttpRequest) -> None:
        if not self.model_admin.has_change_permission(request):
            raise PermissionDenied

    def page(self, request: HttpRequest):
        self._check(request)
        request.session[SKIPPED_SESSION_KEY] = []  # a new sitting
        items = ReviewItem.objects.filter(status=ReviewItem.Status.PENDING).order_by()
        context = {
            **self.model_admin.admin_site.each_context(request), "title": "Label the queue", "opts": ReviewItem._meta,
            "intents": list(Intent.objects.filter(is_active=True).values_list("name", flat=True)),
            "predicted_intents": list(items.values_list("predicted_intent", flat=True).distinct().order_by("predicted_intent")),
            "model_versions": list(items.values_list("model_version", flat=True).distinct().order_by("model_version")),
            "reasons": [*ReviewItem.Reason.choices, ("all", "All")],
            "chosen": {key: request.GET.get(key, "") for key in ("predicted_intent", "model_version", "reason")},
            "review_strategy": settings.REVIEW_STRATEGY,
        }
        return TemplateResponse(request, "admin/review/label.html", context)

    def next_group(self, request: HttpRequest):
        self._check(request)
        filters = _filters(request.GET)
        lead = services.review_group_lease(user=request.user, filters=filters, skipped=request.session.get(SKIPPED_SESSION_KEY, []),
                                           prefer=request.GET.get("prefer", "")[:64])
        return JsonResponse({"group": services.review_group_view(lead) if lead else None, "remaining": _remaining(filters)})

    def decide(self, request: HttpRequest):
        self._check(request)
        try:
            body = _body(request)
            lead_id = body.get("lead_id")
            if isinstance(lead_id, bool) or not isinstance(lead_id, int):
                raise ValidationError({"lead_id": "must be the id of the group's first item."})
            item_ids = body.get("item_ids")
            if not isinstance(item_ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in item_ids):
                raise ValidationError({"item_ids": "must list the ids of the items the screen showed."})
            take_out = body.get("take_out", [])
            if not isinstance(take_out, list) or not all(isinstance(key, str) for key in take_out):
                raise ValidationError({"take_out": "must be a list of text keys."})
            decision = services.review_group_decide(user=request.user, lead_id=lead_id, item_ids=item_ids,
                                                    decision=str(body.get("decision", "")), intent_name=str(body.get("intent", "")),
                                                    take_out=take_out)
        except (ValidationError, services.DecisionConflict) as exc:
            return _error(exc)
        return JsonResponse({"decision_id": decision.pk, "status": decision.status, "intent": decision.intent,
                             "resolved": len(decision.item_ids)})

    def skip(self, request: HttpRequest):
        self._check(request)
        try:
            group_key = str(_body(request).get("group_key", ""))[:64]
        except ValidationError as exc:
            return _error(exc)
        services.review_group_release(user=request.user, group_key=group_key)
        request.session[SKIPPED_SESSION_KEY] = [*request.session.get(SKIPPED_SESSION_KEY, []), group_key][-1000:]
        return JsonResponse({"skipped": group_key})

    def undo(self, request: HttpRequest):
        self._check(request)
        try:
            decision_id = _body(request).get("decision_id")
            if isinstance(decision_id, bool) or not isinstance(decision_id, int):
                raise ValidationError({"decision_id": "must be the id of one of your decisions."})
            decision = services.review_decision_undo(user=request.user, decision_id=decision_id)
        except (ValidationError, services.DecisionConflict) as exc:
            return _error(exc)
        group_key = ReviewItem.objects.filter(id__in=decision.item_ids).order_by("id").values_list("group_key", flat=True).first()
        return JsonResponse({"undone": decision.pk, "group_key": group_key})

    def urls(self, admin_view):
        from django.urls import path

        return [
            path("label/", admin_view(self.page), name="review_label"),
            path("label/next/", admin_view(require_GET(self.next_group)), name="review_label_next"),
            path("label/decide/", admin_view(require_POST(self.decide)), name="review_label_decide"),
            path("label/skip/", admin_view(require_POST(self.skip)), name="review_label_skip"),
            path("label/undo/", admin_view(require_POST(self.undo)), name="review_label_undo"),
        ]
