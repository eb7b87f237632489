from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("review", "0008_traffic_sample_text_key"),
    ]

    operations = [
        migrations.AddField(model_name="reviewdecision", name="utterance_versions", field=models.JSONField(default=dict)),
    ]
