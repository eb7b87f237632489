import secrets
from pathlib import Path

from django.conf import settings
from rest_framework.authtoken.models import Token

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from webapp.labeling import services
from webapp.labeling.roles import LABELERS, ML_ENGINEERS, REVIEW_REPORTERS

HELD_OUT_PER_INTENT = 3
DEMO_USERS = (("admin", None), ("labeler", LABELERS), ("engineer", ML_ENGINEERS))


class Command(BaseCommand):
    help = "Create the demo users (an admin, a Labeler, an ML engineer) and import the demo data set."

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, help="the demo CSV")
        parser.add_argument("--password", help="password for the demo users (default: the one in var/demo/password, or a new random one)")
        parser.add_argument("--token-file", help="write the API token of the serving app's review-reporter user here")

    def handle(self, *args, data, password, token_file, **options):
        password_file = Path(settings.VAR_DIR) / "demo" / "password"
        if not password:
            password = password_file.read_text().strip() if password_file.exists() else secrets.token_urlsafe(9)
        password_file.parent.mkdir(parents=True, exist_ok=True)
        password_file.write_text(password + "\n")
        User = get_user_model()
        for username, role in DEMO_USERS:
            user, _ = User.objects.get_or_create(username=username, defaults={"is_staff": True})
            user.is_staff, user.is_superuser = True, role is None
            user.set_password(password)
            user.save()
            if role:
                user.groups.add(Group.objects.get(name=role))
        reporter, _ = User.objects.get_or_create(username="serving-app", defaults={"is_active": True})
        reporter.groups.add(Group.objects.get(name=REVIEW_REPORTERS))
        if token_file:
            Path(token_file).write_text(Token.objects.get_or_create(user=reporter)[0].key + "\n")
        try:
            report = services.utterances_import(path=data, user=User.objects.get(username="admin"))
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages), returncode=2) from None
        self.stdout.write(report.summary())
        if report.created:
            self._hold_out(User.objects.get(username="admin"))
        self.stdout.write(self.style.SUCCESS(
            "\nAdmin: http://127.0.0.1:8000/admin/  API docs: http://127.0.0.1:8000/api/docs/\n"
            f"Log in as admin, labeler or engineer with the password {password} (kept in {password_file})\n"
        ))

    def _hold_out(self, user) -> None:
        """Three utterances of each intent held out for evaluation: every run is scored on them, and
        the promotion gate compares models on them."""
        from webapp.labeling.models import Intent, Utterance

        held = [pk for intent in Intent.objects.all()
                for pk in Utterance.objects.filter(intent=intent).order_by("id").values_list("pk", flat=True)[:HELD_OUT_PER_INTENT]]
        count = services.utterances_set_held_out(utterances=Utterance.objects.filter(pk__in=held), held_out=True, user=user)
        self.stdout.write(f"{count} utterances held out for evaluation ({HELD_OUT_PER_INTENT} per intent).")
