"""The ``ivrstream`` command line (being built)."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="ivrstream")
def main() -> None:
    """Every Genesys Cloud IVR event, once, in order, durably, with an audit trail."""
