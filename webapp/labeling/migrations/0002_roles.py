from django.db import migrations

# Frozen here: later migrations that add permissions call sync_role_permissions with their own lists.
ROLES = {
    "Labelers": [
        "labeling.view_intent", "labeling.view_utterance", "labeling.add_utterance", "labeling.change_utterance",
        "labeling.view_historicalutterance",
    ],
    "ML engineers": [
        "labeling.view_intent", "labeling.view_utterance", "labeling.add_utterance", "labeling.change_utterance",
        "labeling.view_historicalutterance", "labeling.add_intent", "labeling.change_intent", "labeling.delete_intent",
        "labeling.delete_utterance",
    ],
}


def create_roles(apps, schema_editor):
    from webapp.labeling.roles import sync_role_permissions

    sync_role_permissions(apps, ROLES)


class Migration(migrations.Migration):
    dependencies = [
        ("labeling", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
