"""Business actions of retraining, one concern a module:

- ``launch``: the options, the data checks, the frozen snapshot, the queue, cancel;
- ``worker``: executing a run in the worker (progress, heartbeat, cancellation, the artifact);
- ``promotion``: the registry, the held-out gate, and promoting a run under a fenced lease;
- ``publishing``: serving's files, each version's pair and the switch of the live pair, local or S3;
- ``sweep``: failing runs and promotions whose worker died, and the django-q2 schedules.

Callers import the actions from here; a test that replaces a step patches the module that calls it.
"""

from webapp.training.services.launch import (LAUNCH_OPTIONS, UNCLAIMED_RUN_SECONDS, QueueUnavailable, heldout_count, snapshot_create,
                                             training_config_build, training_data_check, training_queue, training_run_cancel,
                                             training_run_start, training_run_unclaimed_hint)
from webapp.training.services.promotion import (artifact_local_copy, heldout_accuracies, model_promote, model_promote_execute,
                                                model_promote_request, promoted_run, promotion_gate_precheck, quantization_splits,
                                                serving_export)
from webapp.training.services.publishing import ServingFiles, publish_artifact, storage_copy, storage_delete, storage_exists
from webapp.training.services.sweep import SCHEDULES, jobs_sweep, promotions_fail_abandoned, schedules_sync, training_runs_fail_orphans
from webapp.training.services.worker import heartbeat_interval, snapshot_to_data, training_run_execute, worker_identity

__all__ = [
    "LAUNCH_OPTIONS", "UNCLAIMED_RUN_SECONDS", "QueueUnavailable", "heldout_count", "snapshot_create", "training_config_build",
    "training_data_check", "training_queue", "training_run_cancel", "training_run_start", "training_run_unclaimed_hint",
    "artifact_local_copy", "heldout_accuracies", "model_promote", "model_promote_execute", "model_promote_request", "promoted_run",
    "promotion_gate_precheck", "quantization_splits", "serving_export",
    "ServingFiles", "publish_artifact", "storage_copy", "storage_delete", "storage_exists",
    "SCHEDULES", "jobs_sweep", "promotions_fail_abandoned", "schedules_sync", "training_runs_fail_orphans",
    "heartbeat_interval", "snapshot_to_data", "training_run_execute", "worker_identity",
]
