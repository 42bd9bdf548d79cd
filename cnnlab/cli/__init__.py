"""``python -m cnnlab``: the command line.

Every module in this package that defines ``register(subparsers)`` adds its subcommands;
each subcommand sets ``func`` (args -> exit code). Errors meant for the user
(:class:`~cnnlab.errors.CnnlabError`) are printed as one clear message, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ..distributed import GroupStopped
from ..errors import CnnlabError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cnnlab",
        description="cnnlab: build, inspect, train and look inside convolutional networks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{mod.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CnnlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except GroupStopped as e:  # a KeyboardInterrupt with a message: torchrun stopped the group
        print(f"error: {e}", file=sys.stderr)
        return 143  # 128 + SIGTERM
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `python -m cnnlab models | head`
        sys.stderr.close()
        return 0
