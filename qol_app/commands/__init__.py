"""CLI command groups other than db/audit, collected for ``register_commands``."""

from __future__ import annotations

import click

from qol_app.commands.demo import demo
from qol_app.commands.instruments import instruments_group
from qol_app.commands.scoring import rescore

COMMANDS: list[click.Command] = [demo, instruments_group, rescore]

from qol_app.commands.scheduler import scheduler_group  # noqa: E402

COMMANDS.append(scheduler_group)

from qol_app.commands.users import users as users_group  # noqa: E402

COMMANDS.append(users_group)

from qol_app.commands.export import export as export_command  # noqa: E402

COMMANDS.append(export_command)

from qol_app.commands.ops import backup as backup_command  # noqa: E402
from qol_app.commands.ops import check as check_command  # noqa: E402
from qol_app.commands.patients import patients_group  # noqa: E402
from qol_app.commands.sites import sites_group  # noqa: E402

COMMANDS.extend([sites_group, patients_group, check_command, backup_command])

from qol_app.commands.schedule import schedule_group  # noqa: E402

COMMANDS.append(schedule_group)
