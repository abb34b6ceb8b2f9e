"""``gad sweep SPEC`` and ``gad report OUTPUT``: the command-line side of `gad.experiments`
(`gad.cli` adds these commands; nothing here is imported before one of them runs)."""

from __future__ import annotations

import argparse
import sys


def _cmd_sweep(args: argparse.Namespace) -> int:
    from gad.experiments.reporting import report
    from gad.experiments.runner import run
    from gad.experiments.spec import load_spec

    spec = load_spec(args.spec)
    result = run(spec, output=args.output, address=args.address, progress=not args.quiet)
    if not args.quiet:
        print(f"# {result.tasks} tasks: {result.skipped} already recorded, {result.ran} run, {result.failed} "
              f"failed; results in {result.output}", file=sys.stderr)  # fmt: skip
    print(report(result.output).markdown, end="")
    return 0 if result.failed == 0 else 1


def _cmd_report(args: argparse.Namespace) -> int:
    from gad.experiments.reporting import report

    made = report(args.output, plots=not args.no_plots)
    print(made.markdown, end="")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``sweep`` and ``report`` to the ``gad`` command's subparsers."""
    sweep = commands.add_parser("sweep", help="run an experiment spec (problems x samplers x seeds) on Ray", description=(
        "Run every task of the TOML spec that has no record in the output folder yet (so a rerun "
        "resumes), then print the report. Exit status 1 if a task recorded an error."))  # fmt: skip
    sweep.add_argument("spec", metavar="SPEC", help="the experiment spec (.toml)")
    sweep.add_argument("--output", help="the results folder (default: SPEC's folder/SPEC_STEM.results)")
    sweep.add_argument("--address", help="a Ray cluster to run on (e.g. ray://head:10001 or auto; default: a local Ray instance)")
    sweep.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes on stderr")
    sweep.set_defaults(run=_cmd_sweep)
    rep = commands.add_parser("report", help="the summary table and KL plots of a sweep's results", description=(
        "Write OUTPUT/report.md and OUTPUT/kl_FAMILY.png from the records of `gad sweep`, and print the table."))  # fmt: skip
    rep.add_argument("output", metavar="OUTPUT", help="the results folder of `gad sweep`")
    rep.add_argument("--no-plots", action="store_true", help="only the table")
    rep.set_defaults(run=_cmd_report)
