"""The labeling screen's decisions: leases on groups, a decision on the items shown, take-out,
undo, and what the screen shows of a group."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from webapp.labeling import services as labeling
from webapp.labeling.models import Intent, Utterance
from webapp.review.models import ReviewDecision, ReviewItem
from webapp.review import selectors
from webapp.review.selectors import DECIDED

from webapp.review.services.resolution import (MAX_DECISION_ITEMS, pending_group, review_item_accept, review_item_dismiss,
                                                review_item_label, review_item_out_of_scope, unleased_or_held_by)

# --- The labeling screen -------------------------------------------------------------------------

class DecisionConflict(Exception):
    """The decision cannot be made as asked: someone else resolved or holds the item. A 409."""


DECISIONS = ("accept", "label", "out_of_scope", "dismiss")


@dataclass(frozen=True)
class QueueFilters:
    predicted_intent: str = ""
    model_version: str = ""
    reason: str | None = ReviewItem.Reason.LOW_CONFIDENCE


def review_group_take_out(*, item: ReviewItem, text_keys: Iterable[str], item_ids: Iterable[int] | None = None) -> int:
    """Take the pending items with these texts (with ``item_ids``, of those items) out of the item's
    group (a reviewer found they mean something else): they form a group of their own per text,
    and are never grouped again. One UPDATE, however many texts."""
    keys = set(text_keys) - {item.text_key}
    if not keys:
        return 0
    members = pending_group(item).filter(text_key__in=keys)
    if item_ids is not None:
        members = members.filter(id__in=list(item_ids))
    return members.update(group_key=F("text_key"), kept_apart=True, grouped=True, leased_by=None, leased_until=None)


def review_group_lease(*, user: AbstractBaseUser, filters: QueueFilters, skipped: Iterable[str] = (),
                       prefer: str = "") -> ReviewItem | None:
    """The first group of the queue (in REVIEW_STRATEGY's order, within ``filters``) that no other
    reviewer holds and this one has not skipped, leased to ``user`` for REVIEW_LEASE_SECONDS; its
    first item is returned. ``prefer``: a group key to take first if it is still free (after an undo)."""
    skipped = list(skipped)
    for _ in range(20):  # another reviewer may claim the candidate between the read and the write
        lead = None
        if prefer:
            lead = ReviewItem.objects.filter(group_key=prefer, status=ReviewItem.Status.PENDING).order_by("id").first()
            prefer = ""
        if lead is None:
            queue = selectors.review_queue(strategy=settings.REVIEW_STRATEGY, exclude_groups=skipped, predicted_intent=filters.predicted_intent,
                                           model_version=filters.model_version, reason=filters.reason)
            lead = queue.exclude(group_key__in=selectors.leased_groups(other_than=user)).first()
        if lead is None:
            return None
        until = timezone.now() + timezone.timedelta(seconds=settings.REVIEW_LEASE_SECONDS)
        # The claim: one conditional UPDATE of the lead row, so that of two reviewers racing for the
        # same group exactly one wins; the rest of the group follows.
        if ReviewItem.objects.filter(pk=lead.pk, status=ReviewItem.Status.PENDING).filter(unleased_or_held_by(user)).update(
                leased_by=user, leased_until=until):
            pending_group(lead).update(leased_by=user, leased_until=until)
            lead.refresh_from_db()
            return lead
        skipped.append(lead.group_key)
    return None


def review_group_release(*, user: AbstractBaseUser, group_key: str) -> int:
    """Give back the lease on a group (the reviewer skipped it)."""
    return ReviewItem.objects.filter(group_key=group_key, status=ReviewItem.Status.PENDING, leased_by=user).update(
        leased_by=None, leased_until=None)


def _check_decidable(lead_id: int, user: AbstractBaseUser) -> ReviewItem:
    # of=self: PostgreSQL cannot lock the nullable side of the outer joins that fetch the two users.
    lead = ReviewItem.objects.select_for_update(of=("self",)).select_related("resolved_by", "leased_by").filter(pk=lead_id).first()
    if lead is None:
        raise DecisionConflict("This item no longer exists.")
    if lead.status != ReviewItem.Status.PENDING:
        who = lead.resolved_by.get_username() if lead.resolved_by else "someone"
        raise DecisionConflict(f"{who} already decided this item ({lead.get_status_display().lower()}"
                               f"{': ' + lead.reviewed_intent if lead.reviewed_intent else ''}); nothing was changed.")
    if lead.leased_by_id not in (None, user.pk) and lead.leased_until and lead.leased_until > timezone.now():
        raise DecisionConflict(f"{lead.leased_by.get_username()} is deciding this item now; nothing was changed.")
    return lead


def review_group_decide(*, user: AbstractBaseUser, lead_id: int, item_ids: Iterable[int], decision: str, intent_name: str = "",
                        take_out: Iterable[str] = ()) -> ReviewDecision:
    """A decision from the labeling screen on the items ``item_ids`` it showed of the group led by
    ``lead_id``, through the same services as the admin's actions, recorded so that its reviewer
    can undo it. Exactly those items are decided (less those taken out): an item that joined the
    group since the screen showed it stays pending.

    Raises DecisionConflict when someone else has resolved the item or holds its lease, and
    ValidationError for a decision that cannot be made (an unknown intent, a labeling conflict)."""
    if decision not in DECISIONS:
        raise ValidationError({"decision": f"must be one of {', '.join(DECISIONS)}, got {str(decision)[:40]!r}."})
    shown = set(item_ids)
    if lead_id not in shown or len(shown) > MAX_DECISION_ITEMS:
        raise ValidationError({"item_ids": f"must list the shown items of the group, its first item included (at most {MAX_DECISION_ITEMS})."})
    with transaction.atomic():
        lead = _check_decidable(lead_id, user)
        review_group_take_out(item=lead, text_keys=take_out, item_ids=shown)
        if decision == "accept":
            resolution = review_item_accept(item=lead, user=user, item_ids=shown)
        elif decision == "label":
            intent = Intent.objects.filter(name=intent_name).first()
            if intent is None:
                raise ValidationError({"intent": f"There is no intent named {str(intent_name)[:100]!r}."})
            resolution = review_item_label(item=lead, intent=intent, user=user, item_ids=shown)
        elif decision == "out_of_scope":
            resolution = review_item_out_of_scope(item=lead, user=user, item_ids=shown)
        else:
            resolution = review_item_dismiss(item=lead, user=user, item_ids=shown)
        lead.refresh_from_db()
        utterance_ids = [*resolution.created_utterance_ids, *resolution.labeled_utterance_ids]
        return ReviewDecision.objects.create(user=user, status=lead.status, intent=lead.reviewed_intent, item_ids=resolution.item_ids,
                                             created_utterance_ids=resolution.created_utterance_ids,
                                             labeled_utterance_ids=resolution.labeled_utterance_ids,
                                             utterance_versions=_utterance_versions(utterance_ids))


def _utterance_versions(utterance_ids: Iterable[int]) -> dict[str, int]:
    """Each utterance's latest history row: an undo compares them to see whether anyone changed it since."""
    rows = (Utterance.history.filter(id__in=list(utterance_ids)).order_by().values("id").annotate(latest=Max("history_id")))
    return {str(row["id"]): row["latest"] for row in rows}


def review_decision_undo(*, user: AbstractBaseUser, decision_id: int) -> ReviewDecision:
    """Take back one of the user's own decisions: its items are pending again (leased to the user,
    so the screen shows them next), the utterances it created are deleted and those it labeled are
    unlabeled again, each with its history row. Refused when someone has changed them since."""
    with transaction.atomic():
        decision = ReviewDecision.objects.select_for_update().filter(pk=decision_id, user=user).first()
        if decision is None:
            raise DecisionConflict("There is no such decision of yours to undo.")
        if decision.undone_at is not None:
            raise DecisionConflict("This decision was undone already.")
        items = ReviewItem.objects.select_for_update().filter(id__in=decision.item_ids)
        if items.exclude(status=decision.status, resolved_by=user).exists() or items.count() != len(decision.item_ids):
            raise DecisionConflict("Some of these items were changed since this decision; undo refused, nothing was changed.")
        until = timezone.now() + timezone.timedelta(seconds=settings.REVIEW_LEASE_SECONDS)
        if decision.utterance_versions and _utterance_versions(decision.utterance_versions) != decision.utterance_versions:
            raise DecisionConflict("Someone has edited, held out or deleted a text this decision labeled since; "
                                   "undo refused, nothing was changed. Change it in the utterances list instead.")
        items.update(status=ReviewItem.Status.PENDING, resolved_by=None, resolved_at=None, utterance=None, reviewed_intent="",
                     leased_by=user, leased_until=until)
        # An utterance a later decision reused (another copy of the text) stays: that decision still stands.
        created = Utterance.objects.filter(id__in=decision.created_utterance_ids, intent__name=decision.intent)
        for utterance in created.exclude(review_items__status__in=DECIDED):
            labeling.utterance_delete(utterance=utterance, user=user)
        labeled = Utterance.objects.filter(id__in=decision.labeled_utterance_ids, intent__name=decision.intent)
        for utterance in labeled.exclude(review_items__status__in=DECIDED):
            labeling.utterance_update(utterance=utterance, user=user, intent=None)
        decision.undone_at = timezone.now()
        decision.save(update_fields=["undone_at"])
        return decision


def review_group_view(lead: ReviewItem) -> dict[str, Any]:
    """What the screen shows of a group: the lead's text and the model's top three, and each
    distinct text of the group with its number of copies."""
    members: dict[str, dict[str, Any]] = {}
    shown = pending_group(lead).order_by("id").only("text", "text_key", "confidence", "predicted_intent")[:MAX_DECISION_ITEMS]
    for item in shown:
        member = members.setdefault(item.text_key, {"text_key": item.text_key, "text": item.text, "copies": 0, "item_ids": [],
                                                    "predicted_intent": item.predicted_intent, "confidence": item.confidence})
        member["copies"] += 1
        member["item_ids"].append(item.pk)
    known = set(Intent.objects.filter(name__in=[e["intent"] for e in lead.top_intents]).values_list("name", flat=True))
    return {
        "lead_id": lead.pk, "group_key": lead.group_key, "text": lead.text, "reason": lead.reason,
        "model_version": lead.model_version, "predicted_intent": lead.predicted_intent, "confidence": lead.confidence,
        "top_intents": [{**entry, "known": entry["intent"] in known} for entry in lead.top_intents],
        "members": list(members.values()), "size": sum(m["copies"] for m in members.values()),
    }
