from django.conf import settings
from django.db import migrations, models
from django.db.models import F


def fill_group_key(apps, schema_editor):
    """Items stored before near-duplicate grouping: each group is its identical texts, as before."""
    apps.get_model("review", "ReviewItem").objects.update(group_key=F("text_key"))


class Migration(migrations.Migration):

    dependencies = [
        ("review", "0004_audit_and_traffic"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(model_name="reviewitem", name="group_key", field=models.CharField(db_index=True, default="", max_length=64),
                            preserve_default=False),
        migrations.RunPython(fill_group_key, migrations.RunPython.noop),
        migrations.AddField(model_name="reviewitem", name="embedding", field=models.BinaryField(blank=True, editable=False, null=True)),
        migrations.AddField(model_name="reviewitem", name="grouped", field=models.BooleanField(default=False)),
        migrations.AddField(model_name="reviewitem", name="kept_apart", field=models.BooleanField(default=False)),
        migrations.AddField(model_name="reviewitem", name="leased_by", field=models.ForeignKey(
            blank=True, null=True, on_delete=models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL)),
        migrations.AddField(model_name="reviewitem", name="leased_until", field=models.DateTimeField(blank=True, null=True)),
        migrations.RemoveIndex(model_name="reviewitem", name="review_group_idx"),
        migrations.AddIndex(model_name="reviewitem", index=models.Index(fields=["status", "group_key", "id"], name="review_group_idx")),
        migrations.AddIndex(model_name="reviewitem", index=models.Index(fields=["grouped", "model_version"], name="review_grouping_idx")),
        migrations.CreateModel(
            name="ReviewDecision",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("decided_at", models.DateTimeField(auto_now_add=True)),
                ("status", models.CharField(choices=[("pending", "Pending"), ("labeled", "Labeled"), ("out_of_scope", "Out of scope"),
                                                     ("dismissed", "Dismissed")], max_length=14)),
                ("intent", models.CharField(blank=True, max_length=100)),
                ("item_ids", models.JSONField(default=list)),
                ("created_utterance_ids", models.JSONField(default=list)),
                ("labeled_utterance_ids", models.JSONField(default=list)),
                ("undone_at", models.DateTimeField(blank=True, null=True)),
                ("user", models.ForeignKey(on_delete=models.deletion.CASCADE, related_name="+", to=settings.AUTH_USER_MODEL)),
            ],
            options={"ordering": ["-decided_at", "-id"]},
        ),
    ]
