"""`manage.py ensure_admin`: the staff superuser `make run` signs in with, created once and kept."""

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = (
        "Create the superuser USERNAME with the password in DJANGO_SUPERUSER_PASSWORD, or keep the existing one "
        "(its password is set only when it has none). The password is read from the environment, never from the "
        "command line, where other users of the machine could read it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, **options: Any) -> None:
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD", "")
        if not password:
            raise CommandError("Set DJANGO_SUPERUSER_PASSWORD to the password the account should have.")
        username = options["username"]
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"email": f"{username}@localhost"}
        )
        if created or not user.has_usable_password():
            user.set_password(password)
        user.is_staff = user.is_superuser = user.is_active = True
        user.save()
        self.stdout.write(f"{'Created' if created else 'Kept'} the admin account {user.username}.")
