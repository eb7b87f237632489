import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from webapp.labeling import services
from webapp.labeling.models import Utterance


class Command(BaseCommand):
    help = "Export labeled utterances as CSV (text,intent) or JSONL, the formats the import reads."

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=services.EXPORT_FORMATS, default="csv")
        parser.add_argument("--output", "-o", help="file to write (default: standard output)")
        parser.add_argument("--intent", action="append", help="only this intent (repeatable)")

    def handle(self, *args, format, output, intent, **options):
        utterances = Utterance.objects.all()
        if intent:
            utterances = utterances.filter(intent__name__in=intent)
        try:
            if output:
                with open(output, "w", encoding="utf-8", newline="") as stream:
                    count = services.utterances_export(utterances=utterances, fmt=format, stream=stream)
            else:
                count = services.utterances_export(utterances=utterances, fmt=format, stream=sys.stdout)
        except (ValidationError, OSError) as exc:
            raise CommandError(str(exc), returncode=2) from None
        self.stderr.write(f"exported {count} utterances")
