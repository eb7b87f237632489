from django.db import migrations

# Frozen here; the labeling app's 0002 made the groups with their labeling permissions.
ROLES = {
    "Labelers": [
        "labeling.view_intent", "labeling.view_utterance", "labeling.add_utterance", "labeling.change_utterance",
        "labeling.view_historicalutterance", "training.view_trainingrun",
    ],
    "ML engineers": [
        "labeling.view_intent", "labeling.view_utterance", "labeling.add_utterance", "labeling.change_utterance",
        "labeling.view_historicalutterance", "labeling.add_intent", "labeling.change_intent", "labeling.delete_intent",
        "labeling.delete_utterance",
        "training.view_trainingrun", "training.add_trainingrun", "training.change_trainingrun", "training.promote_trainingrun",
        "training.view_datasetsnapshot", "training.view_promotion",
    ],
}


def grant(apps, schema_editor):
    from webapp.labeling.roles import sync_role_permissions

    sync_role_permissions(apps, ROLES)


class Migration(migrations.Migration):
    dependencies = [("training", "0001_initial"), ("labeling", "0002_roles"), ("labeling", "0003_utterance_is_held_out")]
    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
