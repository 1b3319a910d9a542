"""`qwen-math report`: print a run's metrics table; write an HTML report with plots.

``qwen-math report RUN_DIR`` prints datasets x metrics (acc, maj@n, pass@n with 95 %
intervals). ``--html`` also writes ``RUN_DIR/report/report.html`` (self-contained: plots are
embedded, no network needed) and the plots as PNG files next to it: ``curves.png`` (maj@k and
pass@k against k), ``breakdown_<dataset>.png`` (accuracy by level/subject), ``agreement.png``
(answer-agreement histogram). ``--json`` prints the run's ``metrics.json`` instead. A suite run
(or ``--published MODEL``) also gets the model card's layout beside the published numbers
(``qwen_math.runs.card``), in the HTML too, with one ``card_<block>.png`` per block.
"""

from __future__ import annotations

import argparse
import json

HELP = "Print a run's metrics table; write an HTML report with plots."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory made by `eval`")
    parser.add_argument("--html", action="store_true", help="also write RUN_DIR/report/report.html and PNG plots")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.add_argument("--published", default=None, metavar="MODEL",
                        help="compare with this model's published numbers (default for a suite "
                             "run: the run's model when the published file lists it)")
    parser.add_argument("--published-file", dest="published_file", default=None,
                        help="the published tables JSON (default: $QWEN_MATH_PUBLISHED_FILE, else "
                             "qwen25_math_published.json in ../published/ next to the run's data dir)")


def run(args: argparse.Namespace) -> int:
    from qwen_math.runs.card import format_card, load_card
    from qwen_math.runs.report import format_table, load_run_report, write_html_report

    report = load_run_report(args.run_dir)
    card = load_card(report, published=args.published, published_file=args.published_file)
    if args.json:
        print(json.dumps({"datasets": {d.name: d.metrics for d in report.datasets}}, indent=2))
    else:
        print(format_table(report))
        if card is not None:
            print()
            print(format_card(card))
    if args.html:
        path = write_html_report(report, card=card)
        print(f"HTML report: {path}")
    return 0
