"""Near-duplicate grouping of pending review items (the worker, every REVIEW_GROUP_MINUTES)."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Min, Q
from django.utils import timezone

from webapp.review.models import ReviewItem

logger = logging.getLogger(__name__)

# --- Near-duplicate grouping (the worker, every REVIEW_GROUP_MINUTES) ---------------------------
#
# The worker embeds, not serving: serving's events stay small (an embedding is 384 floats: ~4 kB
# of JSON per event, more than the event itself), its ONNX export and its latency stay as they
# are, and the worker already holds every run's artifact and torch. The cost is a delay: a new
# item is grouped by its identical texts at once and by its near-duplicates within a minute.

_embedders: dict[str, Any] = {}  # model version -> mlcore Predictor; one at a time (a worker's memory)


def _embedder(model_version: str):
    """The torch predictor of the run whose artifact is ``model_version``, or None when no run has it."""
    if model_version in _embedders:
        return _embedders[model_version]
    from mlcore.predictor import Predictor
    from webapp.training.models import TrainingRun
    from webapp.training.services import artifact_local_copy

    run = (TrainingRun.objects.filter(artifact_sha256__startswith=model_version).exclude(artifact="").order_by("-id").first()
           if model_version else None)
    predictor = None
    if run is not None:
        try:
            with artifact_local_copy(run) as path:
                predictor = Predictor.from_file(path)
        except Exception as exc:  # an unreadable artifact: those items are grouped by identical text only
            logger.warning("cannot embed items of model %s: %s", model_version, exc)
    _embedders.clear()
    _embedders[model_version] = predictor
    return predictor


def review_items_group(*, similarity: float | None = None, limit: int = 2000) -> dict[str, int]:
    """Embed the pending items not yet grouped and join each to the near-duplicate group it
    belongs to (``mlcore.grouping.leader_groups``), per model version: two models' embeddings are
    not comparable. A group of identical new texts moves as one."""
    import numpy as np

    similarity = similarity or settings.REVIEW_GROUP_SIMILARITY
    counts = {"embedded": 0, "joined": 0, "not_embeddable": 0}
    new = ReviewItem.objects.filter(grouped=False, status=ReviewItem.Status.PENDING)
    for version in list(new.order_by().values_list("model_version", flat=True).distinct()):
        items = list(new.filter(model_version=version).order_by("id")[:limit])
        predictor = _embedder(version)
        if predictor is None:
            ReviewItem.objects.filter(id__in=[i.id for i in items]).update(grouped=True)
            counts["not_embeddable"] += len(items)
            continue
        vectors = predictor.embeddings([item.text for item in items])
        for item, vector in zip(items, vectors):
            item.embedding, item.grouped = vector.astype(np.float32).tobytes(), True
        with transaction.atomic():
            ReviewItem.objects.bulk_update(items, ["embedding", "grouped"], batch_size=500)
            counts["embedded"] += len(items)
            counts["joined"] += _join_groups(version, items, vectors, similarity)
    return counts


def _join_groups(version: str, items: list[ReviewItem], vectors, similarity: float) -> int:
    import numpy as np

    from mlcore.grouping import leader_groups

    fresh_ids = {item.id for item in items}
    # A new unit is a group whose every pending item is new; the others are existing groups, led by
    # their first embedded item.
    pending = ReviewItem.objects.filter(status=ReviewItem.Status.PENDING, model_version=version)
    old_keys = set(pending.exclude(id__in=fresh_ids).values_list("group_key", flat=True))
    units: dict[str, int] = {}  # group key -> row in vectors of its first new item
    for row, item in enumerate(items):
        if item.group_key not in old_keys:
            units.setdefault(item.group_key, row)
    embedded = pending.exclude(id__in=fresh_ids).filter(embedding__isnull=False).order_by()
    first_ids = embedded.values("group_key").annotate(first=Min("id")).values("first")
    leader_keys, leader_vectors = [], []
    for key, blob in ReviewItem.objects.filter(id__in=first_ids).order_by("id").values_list("group_key", "embedding"):
        leader_keys.append(key)
        leader_vectors.append(np.frombuffer(bytes(blob), dtype=np.float32))
    unit_keys = list(units)
    if not unit_keys:
        return 0
    matrix = np.vstack([*leader_vectors, *(vectors[units[key]] for key in unit_keys)])
    keys = leader_keys + unit_keys
    assignment = leader_groups(matrix, similarity, leaders=len(leader_keys))
    joined = 0
    # A leased item stays where it is: its reviewer is deciding the group it was shown in. The
    # condition is in the UPDATE itself, so a lease taken since the read above is seen too.
    unleased = Q(leased_until__isnull=True) | Q(leased_until__lte=timezone.now())
    for position, key in enumerate(unit_keys, start=len(leader_keys)):
        target = keys[assignment[position]]
        if target != key:
            joined += ReviewItem.objects.filter(unleased, group_key=key, status=ReviewItem.Status.PENDING).update(group_key=target)
    return joined
