"""The `reconciler` command line: one parser, one error handler, exit codes CI can use.

Exit codes: 0 success (or in sync), 1 invalid input or a failed operation,
2 usage error (and, for `plan`, changes pending), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from reconciler import __version__
from reconciler.errors import ReconcilerError, ValidationError, unexpected
from reconciler.terminal import for_terminal

# Each command lives in reconciler/commands/<name>.py with `register(subparsers)`
# that sets `func` (args -> exit code). Imported lazily so that `validate` never
# pays for (or depends on) the Kubernetes client.
COMMANDS: dict[str, str] = {
    "validate": "check an environments repo: schemas and cross-file rules",
    "diff": "show what a change to an environments repo does per installation",
    "plan": "show what apply would do for one installation (exit 2 if changes pending)",
    "apply": "converge one installation once",
    "run": "keep one installation converged: poll, watch, resync",
    "status": "print the last pass recorded in the cluster",
    "promote": "declare a project at a commit ref in installations and push",
    "mirror": "turn GitHub Deployments into promotions (webhook or poller)",
    "fleet": "show installations x projects: declared refs, reported health, laggards",
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconciler",
        description="Keep Kubernetes installations at the Helm releases declared in one git repository.",
    )
    parser.add_argument("--version", action="version", version=f"reconciler {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    # Only the chosen command's module is imported; --help lists them all.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, summary in COMMANDS.items():
        if name == chosen:
            module = importlib.import_module(f"reconciler.commands.{name}")
            module.register(subparsers, name, summary)
        else:
            subparsers.add_parser(name, help=summary, description=summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    try:
        code: int = args.func(args)
    except ValidationError as error:
        for problem in error.problems:
            print(for_terminal(problem.render()), file=sys.stderr)
        print(
            f"error: invalid environments repo ({len(error.problems)} problem(s))", file=sys.stderr
        )
        return error.exit_code
    except ReconcilerError as error:
        print(f"error: {for_terminal(str(error), keep_newlines=True)}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # one line: a traceback could quote a value
        print(f"error: {unexpected(error)} (a bug in the reconciler)", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
