"""``seqdeploy backends``."""

from __future__ import annotations

import click


@click.command("backends")
def backends_cmd() -> None:
    """List every backend, its precision, and whether it can run on this machine."""
    from seqdeploy.backends import BACKENDS
    from seqdeploy.backends.probe import availability

    for name, info in BACKENDS.items():
        ok, why = availability(name)
        click.echo(
            f"{name:<14} {info.precision:<5} {'available' if ok else 'unavailable':<12} "
            f"{info.description}{'' if ok else ' — ' + why}"
        )
