from django.db import migrations

# Frozen here (mlcore.data.OOS_LABEL): the intent the review queue's "Out of scope" labels with.
OOS = "oos"


def create_oos_intent(apps, schema_editor):
    """Made once here, so that no action of a Labeler ever creates an intent."""
    Intent = apps.get_model("labeling", "Intent")
    Intent.objects.get_or_create(name=OOS, defaults={"description": "Out of scope: none of the intents."})


class Migration(migrations.Migration):
    dependencies = [("labeling", "0003_utterance_is_held_out")]
    operations = [migrations.RunPython(create_oos_intent, migrations.RunPython.noop)]
