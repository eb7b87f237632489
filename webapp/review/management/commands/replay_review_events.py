from django.core.management.base import BaseCommand, CommandError

from webapp.review import services


class Command(BaseCommand):
    help = "Ingest review events that the serving app could not deliver, from its log (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("logfile", nargs="+", help="log files holding 'review_event_undelivered' lines")

    def handle(self, *args, logfile, **options):
        total = services.ReplayReport()
        for path in logfile:
            try:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    report = services.review_events_replay(lines=handle)
            except OSError as exc:
                raise CommandError(f"Cannot read {path}: {exc.strerror}.", returncode=2) from None
            for field in ("lines", "events", "created", "duplicates", "malformed", "failed"):
                setattr(total, field, getattr(total, field) + getattr(report, field))
        self.stdout.write(f"{total.events} undelivered events found in {total.lines} lines: {total.created} stored (review items, "
                          f"traffic reports and samples), {total.duplicates} already present, {total.malformed} malformed, "
                          f"{total.failed} refused by the database (replay the log again to retry them).")
