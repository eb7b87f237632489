import time

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from mlcore.data import CLINC_SPLITS
from webapp.labeling import services


class Command(BaseCommand):
    help = "Import labeled utterances from a CSV, JSONL or CLINC150 JSON file (all rows, or none)."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--splits", default="train", help=f"CLINC150 splits, comma-separated ({', '.join(CLINC_SPLITS)}); default: train")
        parser.add_argument("--user", help="username recorded as the creator")

    def handle(self, *args, file, splits, user, **options):
        creator = None
        if user:
            creator = get_user_model().objects.filter(username=user).first()
            if creator is None:
                raise CommandError(f"No user named {user!r}.", returncode=2)
        started = time.monotonic()
        try:
            report = services.utterances_import(path=file, user=creator, splits=[s.strip() for s in splits.split(",") if s.strip()])
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages), returncode=2) from None
        for conflict in report.conflicts[:50]:
            self.stderr.write(f"conflict: {conflict}")
        for error in report.errors[:50]:
            self.stderr.write(f"invalid: {error}")
        if not report.written:
            raise CommandError(report.summary(), returncode=2)
        self.stdout.write(self.style.SUCCESS(f"{report.summary()} ({time.monotonic() - started:.1f}s)"))
