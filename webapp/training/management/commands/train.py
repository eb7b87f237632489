import time

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from mlcore.cli import add_option_arguments
from webapp.training import services
from webapp.training.models import Promotion, TrainingRun


class Command(BaseCommand):
    help = "Launch a retraining run on the current labels (it runs in a qcluster worker); --wait follows it."

    def add_arguments(self, parser):
        add_option_arguments(parser, "launch")  # the options TrainConfig lets a launch set, as it declares them
        parser.add_argument("--user", help="username recorded as the launcher")
        parser.add_argument("--wait", action="store_true", help="follow the run; exit 1 unless it succeeds")
        parser.add_argument("--promote", action="store_true", help="with --wait: promote the run when it succeeds")

    def handle(self, *args, wait, user, promote, **options):
        launcher = None
        if user:
            launcher = get_user_model().objects.filter(username=user).first()
            if launcher is None:
                raise CommandError(f"No user named {user!r}.", returncode=2)
        launch = {key: options[key] for key in services.LAUNCH_OPTIONS if options.get(key) is not None}
        try:
            run = services.training_run_start(user=launcher, options=launch)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages), returncode=2) from None
        self.stdout.write(str(run.pk))
        if run.status == TrainingRun.Status.FAILED:
            raise CommandError(run.error_message, returncode=1)
        if not wait:
            return
        last = None
        while not run.is_finished:
            time.sleep(1)
            run.refresh_from_db()
            line = (services.training_run_unclaimed_hint(run=run)
                    or f"run #{run.pk} {run.status}: step {run.step}/{run.total_steps}, epoch {run.epoch:.2f}")
            if line.startswith("No worker") and last is not None and last.startswith("No worker"):
                continue  # said once; the seconds it counts are not news
            if line != last:
                self.stderr.write(line)
                last = line
        if run.status != TrainingRun.Status.SUCCEEDED:
            raise CommandError(f"Run #{run.pk} {run.status}: {run.error_message or 'see its log in the admin'}", returncode=1)
        report = run.heldout_report or run.validation_report
        self.stderr.write(f"run #{run.pk} succeeded: accuracy {report['accuracy']:.4f}, macro-F1 {report['macro_f1']:.4f}")
        if promote:
            self._promote(run, launcher)

    def _promote(self, run, launcher) -> None:
        """Queue the promotion for the worker and wait for it, as the admin's button does."""
        try:
            promotion = services.model_promote_request(run=run, user=launcher)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages), returncode=1) from None
        self.stderr.write(f"promotion #{promotion.pk} of run #{run.pk} queued")
        while not promotion.is_finished:
            time.sleep(0.5)
            promotion.refresh_from_db()
        if promotion.status != Promotion.Status.SUCCEEDED:
            raise CommandError(f"Promotion #{promotion.pk} failed: {promotion.error_message}", returncode=1)
        self.stderr.write(f"run #{run.pk} promoted to {promotion.serving_uri}")
