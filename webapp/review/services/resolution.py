"""Resolving review items: label, accept, out of scope, dismiss. A decision applies to the pending
items of the item's group that no other reviewer holds, and from the labeling screen to exactly the
items it showed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from mlcore.data import OOS_LABEL
from webapp.labeling import services as labeling
from webapp.labeling.models import Intent, Utterance, text_key
from webapp.review.models import ReviewItem


def unleased_or_held_by(user: AbstractBaseUser) -> Q:
    return Q(leased_until__isnull=True) | Q(leased_until__lte=timezone.now()) | Q(leased_by=user)


def pending_group(item: ReviewItem) -> QuerySet[ReviewItem]:
    """Every pending item of the item's group (its identical and near-duplicate texts)."""
    return ReviewItem.objects.filter(group_key=item.group_key, status=ReviewItem.Status.PENDING)


# The most items one decision on the labeling screen shows and decides; a larger group is decided
# in turns (the rest stays pending, next in the queue).
MAX_DECISION_ITEMS = 20_000


def _members(item: ReviewItem, user: AbstractBaseUser | None, item_ids: Iterable[int] | None) -> QuerySet[ReviewItem]:
    """What a decision on ``item`` applies to: the pending items of its group that no other reviewer
    holds, and with ``item_ids`` (the labeling screen) only those the reviewer was shown: an item
    that joined the group since stays pending. Refused when the item itself is no longer pending
    (an admin row decided meanwhile): its group now holds items nobody chose."""
    current = ReviewItem.objects.filter(pk=item.pk).values_list("status", flat=True).first()
    if current != ReviewItem.Status.PENDING:
        shown = ReviewItem.Status(current).label.lower() if current else "deleted"
        raise ValidationError({"item": f"{str(item)!r} was decided already ({shown}); nothing was changed."})
    members = pending_group(item)
    if user is not None:
        members = members.filter(unleased_or_held_by(user))
        if not members.exists():
            holder = pending_group(item).exclude(leased_by=None).select_related("leased_by").first()
            who = holder.leased_by.get_username() if holder else "another reviewer"
            raise ValidationError({"item": f"{who} is deciding {str(item)!r} on the labeling screen; nothing was changed."})
    return members if item_ids is None else members.filter(id__in=list(item_ids))


@dataclass
class Resolution:
    """What one decision did: how many items it resolved, and the utterances it created or labeled
    (what an undo takes back)."""

    item_ids: list[int] = field(default_factory=list)
    created_utterance_ids: list[int] = field(default_factory=list)
    labeled_utterance_ids: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.item_ids)


def _resolve(items: QuerySet[ReviewItem], *, status: str, user: AbstractBaseUser | None, utterance: Utterance | None) -> list[int]:
    ids = list(items.values_list("id", flat=True))
    reviewed_intent = utterance.intent.name if utterance is not None and utterance.intent_id else ""
    ReviewItem.objects.filter(id__in=ids).update(status=status, resolved_by=user, resolved_at=timezone.now(), utterance=utterance,
                                                 reviewed_intent=reviewed_intent, leased_by=None, leased_until=None)
    return ids


def _utterance_for(text: str, intent: Intent, user: AbstractBaseUser | None, resolution: Resolution) -> Utterance:
    """The labeled utterance for a reviewed text, with the usual duplicate and conflict rules:
    the same text already labeled the same way is reused; labeled another way, it is a conflict."""
    existing = Utterance.objects.select_related("intent").filter(text_key=text_key(text)).first()
    if existing is None:
        created = labeling.utterance_create(text=text, intent=intent, source=Utterance.Source.REVIEW, user=user)
        resolution.created_utterance_ids.append(created.pk)
        return created
    if existing.intent_id == intent.pk:
        return existing
    if existing.intent_id is None:
        resolution.labeled_utterance_ids.append(existing.pk)
        return labeling.utterance_update(utterance=existing, user=user, intent=intent)
    raise ValidationError({"intent": (f"{text!r} is already labeled {existing.intent.name} (utterance #{existing.pk}); "
                                      f"change it there if {intent.name} is right.")})


def _label_group(item: ReviewItem, intent: Intent, user: AbstractBaseUser | None, status: str,
                 item_ids: Iterable[int] | None) -> Resolution:
    """Each distinct text of the decided items (``_members``) becomes a labeled utterance
    (near-duplicates are examples worth keeping, not copies), and each item is resolved with its text's."""
    resolution = Resolution()
    with transaction.atomic():
        group = _members(item, user, item_ids)
        for key in group.order_by("text_key").values_list("text_key", flat=True).distinct():
            same_text = group.filter(text_key=key)
            utterance = _utterance_for(same_text.order_by("id").first().text, intent, user, resolution)
            resolution.item_ids += _resolve(same_text, status=status, user=user, utterance=utterance)
    return resolution


def review_item_label(*, item: ReviewItem, intent: Intent, user: AbstractBaseUser | None,
                      item_ids: Iterable[int] | None = None) -> Resolution:
    """Label the item's texts (those of its group too; with ``item_ids``, only those items) as
    ``intent``; ``len()`` of the result is how many resolved."""
    return _label_group(item, intent, user, ReviewItem.Status.LABELED, item_ids)


def review_item_accept(*, item: ReviewItem, user: AbstractBaseUser | None, item_ids: Iterable[int] | None = None) -> Resolution:
    """The prediction was right: label the text with the predicted intent."""
    intent = Intent.objects.filter(name=item.predicted_intent).first()
    if intent is None:
        raise ValidationError({"intent": f"The predicted intent {item.predicted_intent!r} no longer exists; use 'Label as…'."})
    return review_item_label(item=item, intent=intent, user=user, item_ids=item_ids)


def review_item_out_of_scope(*, item: ReviewItem, user: AbstractBaseUser | None, item_ids: Iterable[int] | None = None) -> Resolution:
    """Keep the text as an out-of-scope example (intent ``oos``): it tunes the threshold and
    measures out-of-scope recall in later runs, as CLINC150's out-of-scope queries do.

    The ``oos`` intent is made by a migration; this never creates it (creating intents is an ML
    engineer's right), and says so if an ML engineer has deleted it."""
    oos = Intent.objects.filter(name=OOS_LABEL).first()
    if oos is None:
        raise ValidationError({"intent": f"There is no {OOS_LABEL!r} intent for out-of-scope texts; an ML engineer can create it."})
    return _label_group(item, oos, user, ReviewItem.Status.OUT_OF_SCOPE, item_ids)


def review_item_dismiss(*, item: ReviewItem, user: AbstractBaseUser | None, item_ids: Iterable[int] | None = None) -> Resolution:
    with transaction.atomic():
        return Resolution(item_ids=_resolve(_members(item, user, item_ids), status=ReviewItem.Status.DISMISSED, user=user, utterance=None))
