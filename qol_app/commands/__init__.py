"""CLI command groups other than db/audit, collected for ``register_commands``."""
from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
