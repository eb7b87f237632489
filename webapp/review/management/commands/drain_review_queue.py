from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from webapp.review import services


class Command(BaseCommand):
    help = "Move the events waiting in the SQS review queue (REVIEW_QUEUE_URL) into the review queue, once."

    def handle(self, *args, **options):
        if not settings.REVIEW_QUEUE_URL:
            raise CommandError("REVIEW_QUEUE_URL is not set.", returncode=2)
        self.stdout.write(str(services.review_queue_drain()))
