from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("training", "0004_served_precision"),
    ]

    operations = [
        migrations.AddField(model_name="promotion", name="heartbeat_at", field=models.DateTimeField(blank=True, null=True)),
        migrations.AddField(model_name="promotionlock", name="generation", field=models.PositiveBigIntegerField(default=0)),
    ]
