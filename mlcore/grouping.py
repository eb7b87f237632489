"""Near-duplicate grouping of review items: one decision for texts that say the same thing.

Items are compared by the cosine similarity of their sentence embeddings (the mean-pooled output
of the encoder of the model that predicted them, L2-normalised by mlcore.metrics.normalise).
Grouping is leader clustering: in arrival order, an item joins the group whose first item (its
leader) it is most similar to, if that similarity reaches the threshold, and otherwise starts a
group of its own. An item is compared with leaders only, never with other members, so a group
cannot drift by chaining ("balance" ~ "balance please" ~ "pay my balance please" ~ ...): every
member is close to one text.
"""

from __future__ import annotations

from itertools import combinations
from typing import Hashable, Sequence

import numpy as np


def leader_groups(embeddings: np.ndarray, threshold: float, *, leaders: int = 0) -> np.ndarray:
    """For each row, the index of the row that leads its group (itself for a leader).

    ``embeddings`` are unit-length rows in arrival order; the first ``leaders`` rows are existing
    groups' leaders (they never join one another). The others join the most similar leader when
    the cosine similarity is at least ``threshold``, or lead a new group.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    embeddings = np.asarray(embeddings, dtype=np.float32)
    count = len(embeddings)
    assignment = np.arange(count)
    leader_rows = list(range(min(leaders, count)))
    for row in range(len(leader_rows), count):
        if leader_rows:
            similarity = embeddings[leader_rows] @ embeddings[row]
            best = int(similarity.argmax())
            if similarity[best] >= threshold:
                assignment[row] = leader_rows[best]
                continue
        leader_rows.append(row)
    return assignment


def pair_purity(groups: Sequence[Hashable], labels: Sequence[Hashable]) -> tuple[float | None, int]:
    """The share of pairs of items in the same group that share a label, and the number of such
    pairs (None when no group has two items). The measure REVIEW_GROUP_SIMILARITY is chosen on."""
    members: dict[Hashable, list[Hashable]] = {}
    for group, label in zip(groups, labels):
        members.setdefault(group, []).append(label)
    pairs = same = 0
    for group_labels in members.values():
        for first, second in combinations(group_labels, 2):
            pairs += 1
            same += first == second
    return (same / pairs if pairs else None), pairs
