"""The two roles, as Django groups with model permissions (created by a data migration)."""

from __future__ import annotations

LABELERS = "Labelers"
ML_ENGINEERS = "ML engineers"
REVIEW_REPORTERS = "Review reporters"  # the serving app's service account: posts review items, nothing else

LABELER_PERMISSIONS = [
    "labeling.view_intent",
    "labeling.view_utterance",
    "labeling.add_utterance",
    "labeling.change_utterance",
    "labeling.view_historicalutterance",
    "training.view_trainingrun",
    "review.view_reviewitem",
    "review.change_reviewitem",
]
ML_ENGINEER_PERMISSIONS = LABELER_PERMISSIONS + [
    "labeling.add_intent",
    "labeling.change_intent",
    "labeling.delete_intent",
    "labeling.delete_utterance",
    "training.add_trainingrun",
    "training.change_trainingrun",
    "training.promote_trainingrun",
    "training.view_datasetsnapshot",
    "training.view_promotion",
    "review.view_trafficsample",
    "review.delete_trafficsample",
]
ROLE_PERMISSIONS = {
    LABELERS: LABELER_PERMISSIONS,
    ML_ENGINEERS: ML_ENGINEER_PERMISSIONS,
    REVIEW_REPORTERS: ["review.add_reviewitem"],
}


def sync_role_permissions(apps, roles: dict[str, list[str]] = ROLE_PERMISSIONS) -> None:
    """Create the groups and give them exactly their permissions; for use inside migrations."""
    from django.contrib.auth.management import create_permissions

    # Permissions are normally made after all migrations; make them now so the groups can get them.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in roles.items():
        group, _ = Group.objects.get_or_create(name=name)
        permissions = []
        for dotted in codenames:
            app_label, codename = dotted.split(".")
            permissions.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
        group.permissions.set(permissions)
