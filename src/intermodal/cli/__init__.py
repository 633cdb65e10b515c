"""Command-line frontend (placeholder until the command groups land)."""

import click


@click.group()
def main() -> None:
    """intermodal: run the same image as a container or a micro-VM."""
