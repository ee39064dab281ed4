"""``python -m smoothprobe …`` (and ``torchrun … -m smoothprobe …``): the command line."""

from __future__ import annotations


def main() -> None:
    from smoothprobe_cli.main import cli

    cli(prog_name="smoothprobe")


if __name__ == "__main__":
    main()
