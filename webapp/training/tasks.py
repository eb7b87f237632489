"""django-q2 tasks: thin, they take ids and call services."""

from webapp.training import services


def training_run_task(run_id: int) -> str | None:
    run = services.training_run_execute(run_id=run_id)
    return run.status if run else None
