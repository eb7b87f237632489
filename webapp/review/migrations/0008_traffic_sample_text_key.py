"""One traffic sample per text: the key is filled from each text, and of the samples that share a
text only the most recently received one is kept."""

from django.db import migrations, models


def keep_one_sample_per_text(apps, schema_editor):
    from webapp.labeling.models import text_key

    TrafficSample = apps.get_model("review", "TrafficSample")
    seen: set[str] = set()
    duplicates = []
    for sample in TrafficSample.objects.order_by("-received_at", "-id").only("id", "text").iterator(chunk_size=2000):
        key = text_key(sample.text)
        if key in seen:
            duplicates.append(sample.pk)
            continue
        seen.add(key)
        TrafficSample.objects.filter(pk=sample.pk).update(text_key=key)
    for start in range(0, len(duplicates), 500):
        TrafficSample.objects.filter(pk__in=duplicates[start:start + 500]).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("review", "0007_traffic_sample"),
    ]

    operations = [
        migrations.AddField(model_name="trafficsample", name="text_key", field=models.CharField(default="", editable=False, max_length=64)),
        migrations.RunPython(keep_one_sample_per_text, migrations.RunPython.noop),
        migrations.AlterField(model_name="trafficsample", name="text_key", field=models.CharField(editable=False, max_length=64, unique=True)),
    ]
