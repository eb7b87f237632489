import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


def existing_promotions_succeeded(apps, schema_editor):
    """Promotions made before this migration were carried out in the request: they all went live."""
    Promotion = apps.get_model("training", "Promotion")
    for promotion in Promotion.objects.all():
        promotion.status = "succeeded"
        promotion.requested_at = promotion.promoted_at
        promotion.finished_at = promotion.promoted_at
        promotion.save(update_fields=["status", "requested_at", "finished_at"])


class Migration(migrations.Migration):
    dependencies = [("training", "0002_roles")]

    operations = [
        migrations.AlterModelOptions(name="promotion", options={"ordering": ["-requested_at", "-id"]}),
        migrations.AddField(model_name="promotion", name="status", field=models.CharField(
            choices=[("queued", "Queued"), ("running", "Running"), ("succeeded", "Succeeded"), ("failed", "Failed")],
            db_index=True, default="queued", max_length=10)),
        migrations.AddField(model_name="promotion", name="requested_at", field=models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
        migrations.AlterField(model_name="promotion", name="promoted_at", field=models.DateTimeField(
            blank=True, db_index=True, help_text="when serving got the model", null=True)),
        migrations.AddField(model_name="promotion", name="finished_at", field=models.DateTimeField(blank=True, null=True)),
        migrations.AddField(model_name="promotion", name="version_uri", field=models.CharField(
            blank=True, help_text="where this version's files were published", max_length=500)),
        migrations.AddField(model_name="promotion", name="error_message", field=models.TextField(blank=True)),
        migrations.AddField(model_name="promotion", name="task_id", field=models.CharField(blank=True, max_length=64)),
        migrations.RunPython(existing_promotions_succeeded, migrations.RunPython.noop),
        migrations.CreateModel(
            name="PromotionLock",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("expires_at", models.DateTimeField(blank=True, null=True)),
                ("holder", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                             related_name="+", to="training.promotion")),
            ],
        ),
    ]
