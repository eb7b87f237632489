import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from webapp.labeling import services
from webapp.labeling.roles import LABELERS, ML_ENGINEERS

DEMO_USERS = (("admin", None), ("labeler", LABELERS), ("engineer", ML_ENGINEERS))


class Command(BaseCommand):
    help = "Create the demo users (an admin, a Labeler, an ML engineer) and import the demo data set."

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, help="the demo CSV")
        parser.add_argument("--password", help="password for the demo users (default: a new random one, printed)")

    def handle(self, *args, data, password, **options):
        password = password or secrets.token_urlsafe(9)
        User = get_user_model()
        for username, role in DEMO_USERS:
            user, _ = User.objects.get_or_create(username=username, defaults={"is_staff": True})
            user.is_staff, user.is_superuser = True, role is None
            user.set_password(password)
            user.save()
            if role:
                user.groups.add(Group.objects.get(name=role))
        try:
            report = services.utterances_import(path=data, user=User.objects.get(username="admin"))
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages), returncode=2) from None
        self.stdout.write(report.summary())
        self.stdout.write(self.style.SUCCESS(
            "\nAdmin: http://127.0.0.1:8000/admin/  API docs: http://127.0.0.1:8000/api/docs/\n"
            f"Log in as admin, labeler or engineer with the password {password}\n"
        ))
