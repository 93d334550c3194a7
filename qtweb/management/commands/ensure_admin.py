"""Create the first admin user with a random password, once.

The password is printed once and written to var/admin-credentials.txt (mode 600) so the
person who ran `make run` can find it; it is never hard-coded. Later runs do nothing.
"""
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create an admin superuser on first run and print its generated password once."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("admin user exists; see var/admin-credentials.txt if it was created by make run")
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        path = Path(settings.VAR_DIR) / "admin-credentials.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"username: {username}\npassword: {password}\n")
        path.chmod(0o600)
        bar = "=" * 64
        self.stdout.write(f"\n{bar}\n  Admin user created (shown once; also in {path}):\n"
                          f"    username: {username}\n    password: {password}\n{bar}\n")
