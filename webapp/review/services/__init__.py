"""Business actions of the review queue, one concern a module:

- ``ingest``: messages from serving (review events, traffic reports, traffic samples), checked and stored;
- ``drain``: the SQS review queue and the replay of serving's undelivered log lines;
- ``resolution``: label, accept, out of scope, dismiss (the changelist's actions and the screen's);
- ``decisions``: the labeling screen's leases, decisions on what it showed, take-out and undo;
- ``grouping``: the worker that joins near-duplicates into groups;
- ``summary``: what the admin's index shows of the queue.

Callers import the actions from here; a test that replaces a module's setting patches that module.
"""

from webapp.review.services.decisions import (DECISIONS, DecisionConflict, QueueFilters, review_decision_undo, review_group_decide,
                                              review_group_lease, review_group_release, review_group_take_out, review_group_view)
from webapp.review.services.drain import ReplayReport, review_events_replay, review_queue_drain
from webapp.review.services.grouping import review_items_group
from webapp.review.services.ingest import (INTENT_NAME_MAX_LENGTH, MAX_DISTRIBUTION_ENTRIES, MAX_REPORTED_PREDICTIONS,
                                           MODEL_VERSION_MAX_LENGTH, TRAFFIC_REPORT, TRAFFIC_SAMPLE, UNDELIVERED_EVENT, ReviewEvent,
                                           review_event_clean, review_item_ingest, serving_event_ingest, traffic_report_ingest,
                                           traffic_sample_ingest, traffic_samples_prune)
from webapp.review.services.resolution import (MAX_DECISION_ITEMS, Resolution, review_item_accept, review_item_dismiss, review_item_label,
                                               review_item_out_of_scope)
from webapp.review.services.summary import review_summary

__all__ = [
    "DECISIONS", "DecisionConflict", "QueueFilters", "review_decision_undo", "review_group_decide", "review_group_lease",
    "review_group_release", "review_group_take_out", "review_group_view",
    "ReplayReport", "review_events_replay", "review_queue_drain",
    "review_items_group",
    "INTENT_NAME_MAX_LENGTH", "MAX_DISTRIBUTION_ENTRIES", "MAX_REPORTED_PREDICTIONS", "MODEL_VERSION_MAX_LENGTH", "TRAFFIC_REPORT",
    "TRAFFIC_SAMPLE", "UNDELIVERED_EVENT", "ReviewEvent", "review_event_clean", "review_item_ingest", "serving_event_ingest",
    "traffic_report_ingest", "traffic_sample_ingest", "traffic_samples_prune",
    "MAX_DECISION_ITEMS", "Resolution", "review_item_accept", "review_item_dismiss", "review_item_label", "review_item_out_of_scope",
    "review_summary",
]
