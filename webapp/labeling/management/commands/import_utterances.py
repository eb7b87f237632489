import time

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from mlcore.data import CLINC_SPLITS
from webapp.labeling import services


class Command(BaseCommand):
    help = ("Import labeled utterances from a CSV, JSONL or CLINC150 JSON file (all rows, or none). "
            "Run by an operator, it may create intents; with --user, it has that user's rights.")

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--splits", default="train", help=f"CLINC150 splits, comma-separated ({', '.join(CLINC_SPLITS)}); default: train")
        parser.add_argument("--user", help="import as this user: recorded as the creator, and new intents only if they may add intents")

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
        self._list("conflict", report.conflicts, report.conflict_count)
        self._list("invalid", report.errors, report.error_count)
        if not report.written:
            raise CommandError(report.summary(), returncode=2)
        self.stdout.write(self.style.SUCCESS(f"{report.summary()} ({time.monotonic() - started:.1f}s)"))

    def _list(self, kind: str, listed: list, total: int) -> None:
        for problem in listed:
            self.stderr.write(f"{kind}: {problem}")
        if total > len(listed):
            self.stderr.write(f"{kind}: ... and {total - len(listed)} more ({total} in all; the first {len(listed)} are listed)")
