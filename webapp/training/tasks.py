"""django-q2 tasks: thin, they take ids and call services."""

from webapp.training import services


def training_run_task(run_id: int) -> str | None:
    run = services.training_run_execute(run_id=run_id)
    return run.status if run else None


def model_promote_task(promotion_id: int) -> str | None:
    promotion = services.model_promote_execute(promotion_id=promotion_id)
    return promotion.status if promotion else None


def jobs_sweep_task() -> dict[str, int]:
    return services.jobs_sweep()
