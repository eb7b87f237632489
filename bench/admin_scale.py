"""How fast the admin's list pages answer with 100,000 utterances and 50,000 review items.

    .venv/bin/python -m bench.admin_scale                      # a fresh SQLite file in a temporary folder
    createdb -h 127.0.0.1 -U postgres admin_scale
    .venv/bin/python -m bench.admin_scale --database-url postgres://postgres@127.0.0.1:5432/admin_scale

Migrates the (fresh, empty) database, loads the rows with bulk inserts, then requests each list page
with Django's test client, logged in as an ML engineer: one warm-up request, then the median of
``--runs`` requests, with the number of SQL queries of one request. Django runs with DEBUG off, as
deployed; the machine's load average is printed, since other jobs on it slow every figure.
"""

from __future__ import annotations

import datetime
import os
import platform
import random
import secrets
import shlex
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import argument_parser, command_line, keep_report

BATCH = 2_000


def configure(database_url: str | None, folder: str) -> str:
    """Production settings (DEBUG off) on the benchmark's database; read once, when Django starts.

    Not the test environment: it instruments every template render, which would dominate the timings.
    """
    url = database_url or f"sqlite:///{Path(folder) / 'admin_scale.sqlite3'}"
    os.environ.update({
        "DATABASE_URL": url, "DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "testserver",
        "VAR_DIR": folder, "DJANGO_SETTINGS_MODULE": "webapp.settings",
    })
    import django

    django.setup()
    return url


def load(*, utterances: int, review_items: int, seed: int = 0):
    """Intents, utterances (with their history), review items and training runs. Returns the ML engineer,
    the utterance with a long history and an intent to filter by."""
    from django.contrib.auth.models import Group, User
    from django.utils import timezone
    from simple_history.utils import bulk_create_with_history

    from webapp.labeling import services as labeling
    from webapp.labeling.models import Intent, Utterance, fold_text, text_key
    from webapp.labeling.roles import ML_ENGINEERS
    from webapp.review.models import ReviewItem
    from webapp.training.models import DatasetSnapshot, Promotion, TrainingRun

    rng = random.Random(seed)
    engineer = User.objects.create_user("bench-engineer", is_staff=True)
    engineer.groups.add(Group.objects.get(name=ML_ENGINEERS))
    intents = Intent.objects.bulk_create([Intent(name=f"intent_{i:03d}") for i in range(150)])
    now = timezone.now()
    for start in range(0, utterances, BATCH):
        rows = []
        for index in range(start, min(start + BATCH, utterances)):
            text = f"utterance {index} about {rng.choice(('news', 'music', 'weather', 'travel', 'a reminder'))}"
            intent = None if index % 10 == 0 else intents[index % len(intents)]  # every tenth unlabeled
            rows.append(Utterance(text=text, normalized_text=fold_text(text), text_key=text_key(text), intent=intent,
                                  source=Utterance.Source.IMPORT, created_by=engineer, updated_by=engineer))
        created = bulk_create_with_history(rows, Utterance, batch_size=BATCH, default_user=engineer)
        Utterance.objects.filter(pk__in=[u.pk for u in created]).update(created_at=now - datetime.timedelta(minutes=utterances - start))
    # One utterance with a long history, for its history page.
    relabeled = Utterance.objects.order_by("pk").first()
    for index in range(60):
        labeling.utterance_update(utterance=relabeled, intent=intents[index % len(intents)], user=engineer)

    texts = [f"what about thing number {i}" for i in range(int(review_items * 0.7))]  # many texts come back several times
    statuses = [ReviewItem.Status.PENDING] * 8 + [ReviewItem.Status.LABELED, ReviewItem.Status.DISMISSED]
    for start in range(0, review_items, BATCH):
        rows = []
        for _ in range(start, min(start + BATCH, review_items)):
            text, intent, confidence = rng.choice(texts), rng.choice(intents).name, rng.uniform(0.05, 0.7)
            rows.append(ReviewItem(
                prediction_id=uuid.UUID(int=rng.getrandbits(128)), text=text, text_key=text_key(text), group_key=text_key(text),
                predicted_intent=intent,
                confidence=confidence, top_intents=[{"intent": intent, "probability": confidence}], margin=confidence / 2,
                model_version=rng.choice(("a1b2c3d4e5f6", "0f9e8d7c6b5a", "123456abcdef")), threshold=0.7, predicted_at=now,
                status=rng.choice(statuses),
            ))
        ReviewItem.objects.bulk_create(rows, batch_size=BATCH)

    snapshot = DatasetSnapshot.objects.create(fingerprint="f" * 64, heldout_fingerprint="h" * 64, train_count=utterances, heldout_count=0)
    runs = TrainingRun.objects.bulk_create([
        TrainingRun(snapshot=snapshot, config={}, requested_device="cpu", created_by=engineer, status=TrainingRun.Status.SUCCEEDED,
                    metrics={"test": {"accuracy": 0.9}}, artifact_sha256=f"{i:064x}")
        for i in range(200)
    ])
    Promotion.objects.bulk_create([
        Promotion(run=run, previous_run=runs[0], promoted_by=engineer, promoted_at=now, serving_uri="var/serving/model.pt")
        for run in runs[1:]
    ])
    return engineer, relabeled, intents[7]


def pages(relabeled, intent) -> list[tuple[str, str]]:
    return [
        ("utterances", "/admin/labeling/utterance/"),
        ("utterances of one intent", f"/admin/labeling/utterance/?intent__id__exact={intent.pk}"),
        ("unlabeled utterances", "/admin/labeling/utterance/?labeled=no"),
        ("utterances, searched", "/admin/labeling/utterance/?q=weather"),
        ("utterances by intent", "/admin/labeling/utterance/?o=2"),
        ("intents", "/admin/labeling/intent/"),
        ("intent autocomplete (a row's search)", "/admin/autocomplete/?app_label=labeling&model_name=utterance&field_name=intent&term=ent_1"),
        ("review queue (pending)", "/admin/review/reviewitem/"),
        ("review queue by copies", "/admin/review/reviewitem/?o=-2"),
        ("review queue, all statuses", "/admin/review/reviewitem/?status=all"),
        ("review queue, one intent and band", f"/admin/review/reviewitem/?predicted_intent__exact={intent.name}&confidence=30to50"),
        ("review queue, searched", "/admin/review/reviewitem/?q=number+12"),
        ("training runs", "/admin/training/trainingrun/"),
        ("promotions", "/admin/training/promotion/"),
        ("utterance history (61 changes)", f"/admin/labeling/utterance/{relabeled.pk}/history/"),
    ]


def measure(client, url: str, runs: int) -> tuple[float, int, int]:
    """Median seconds of ``runs`` requests (after a warm-up), the queries of one, the rows listed."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(url, secure=True)  # HTTPS, as behind the load balancer: no redirect
    assert response.status_code == 200, f"{url}: HTTP {response.status_code}"
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        client.get(url, secure=True)
        seconds.append(time.perf_counter() - started)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, secure=True)
    return statistics.median(seconds), len(queries), listed_rows(response)


def listed_rows(response) -> int:
    """The rows a list page shows: a changelist's page of results, or a history page's records."""
    context = getattr(response, "context_data", None)
    if context and "cl" in context:
        return len(context["cl"].result_list)
    if response["Content-Type"].startswith("application/json"):
        return len(response.json()["results"])
    return response.content.decode().partition("<tbody>")[2].count("<tr")


def vacuum_if_postgres() -> None:
    """What PostgreSQL's autovacuum does within a minute of the load (statistics, and the visibility
    map that lets index-only scans skip the table), done now so every run measures the same state."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")


def database_line() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
            return f"PostgreSQL {cursor.fetchone()[0]}"
        cursor.execute("select sqlite_version()")
        return f"SQLite {cursor.fetchone()[0]}"


def machine_line() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "unknown CPU")
    return f"{cpu}, {os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}); Python {platform.python_version()}"


def main() -> None:
    parser = argument_parser("admin_scale", __doc__, "section 8")
    parser.add_argument("--database-url", help="a fresh, empty database (default: a new SQLite file in a temporary folder)")
    parser.add_argument("--utterances", type=int, default=100_000)
    parser.add_argument("--review-items", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5, help="timed requests per page (the median is shown)")
    args = parser.parse_args()
    keep_report("admin_scale", args.output)

    with tempfile.TemporaryDirectory(prefix="admin-scale-") as folder:
        configure(args.database_url, folder)
        from django.core.management import call_command
        from django.test import Client

        from webapp.labeling.models import Utterance

        call_command("migrate", verbosity=0)
        if Utterance.objects.exists():
            sys.exit("The database already holds utterances: give a fresh, empty one (createdb NAME).")
        started = time.perf_counter()
        engineer, relabeled, intent = load(utterances=args.utterances, review_items=args.review_items)
        loaded = time.perf_counter() - started
        vacuum_if_postgres()
        client = Client()
        client.force_login(engineer)
        load_average = " / ".join(f"{value:.1f}" for value in os.getloadavg())

        command = " ".join(shlex.quote(a) for a in [".venv/bin/python", *command_line()])
        print(f"## Admin list pages at scale\n\n- date: {datetime.date.today().isoformat()}\n- machine: {machine_line()}\n"
              f"- database: {database_line()}, {args.utterances:,} utterances, {args.review_items:,} review items "
              f"(loaded in {loaded:.0f} s)\n- load average (1/5/15 min) when the timing started: {load_average}\n"
              f"- command: `{command}`\n")
        print(f"| page | URL | median of {args.runs} (ms) | queries | rows shown |\n| --- | --- | --- | --- | --- |")
        for name, url in pages(relabeled, intent):
            seconds, queries, rows = measure(client, url, args.runs)
            print(f"| {name} | `{url}` | {seconds * 1000:.0f} | {queries} | {rows} |", flush=True)


if __name__ == "__main__":
    main()
