from django.db import migrations

# Frozen here: the permissions each group holds once this migration has run.
LABELING = [
    "labeling.view_intent", "labeling.view_utterance", "labeling.add_utterance", "labeling.change_utterance",
    "labeling.view_historicalutterance",
]
ROLES = {
    "Labelers": LABELING + ["training.view_trainingrun", "review.view_reviewitem", "review.change_reviewitem"],
    "ML engineers": LABELING + [
        "labeling.add_intent", "labeling.change_intent", "labeling.delete_intent", "labeling.delete_utterance",
        "training.view_trainingrun", "training.add_trainingrun", "training.change_trainingrun", "training.promote_trainingrun",
        "training.view_datasetsnapshot", "training.view_promotion",
        "review.view_reviewitem", "review.change_reviewitem",
    ],
    # The serving app's service account: it can post review items and do nothing else.
    "Review reporters": ["review.add_reviewitem"],
}


def grant(apps, schema_editor):
    from webapp.labeling.roles import sync_role_permissions

    sync_role_permissions(apps, ROLES)


def schedule_drain(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name="drain review queue",
        defaults={"func": "webapp.review.tasks.review_queue_drain_task", "schedule_type": "I", "minutes": 1, "repeats": -1},
    )


class Migration(migrations.Migration):
    dependencies = [
        ("review", "0001_initial"),
        ("training", "0002_roles"),
        ("django_q", "0018_task_success_index"),
    ]
    operations = [
        migrations.RunPython(grant, migrations.RunPython.noop),
        migrations.RunPython(schedule_drain, migrations.RunPython.noop),
    ]
