"""Sample every posteriordb port with exmc's NUTS and write the comparison with Stan's reference
draws to ``docs/validation.md`` (criteria: :mod:`exmc.models.validation`).

    python bench/validation_report.py                    # all ports (long: minutes per model)
    python bench/validation_report.py earnings- kidiq-   # only posteriors whose name starts so
    python bench/validation_report.py --skip diamonds    # all but the slowest
    python bench/validation_report.py --quick            # smoke: 2 chains x (200 + 200), not written
    python bench/validation_report.py --variants arma-   # also the other ports (exmc.models.VARIANTS)
    python bench/validation_report.py --merge a.md b.md  # rows of runs made apart, into the report

A run over a subset replaces that subset's rows of an existing report and keeps the others.
Exit status 1 when any posterior fails (or, with ``--quick``, only when something crashes).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import logging
import platform
import sys
import textwrap
from pathlib import Path

from exmc.models import MODELS, VARIANTS, build, posteriordb, sampler_options, validation

OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "validation.md"
#: Issue 4's run length: 4 chains x (1000 warmup + 1000 draws).
FULL = dict(num_chains=4, num_samples=1000, num_warmup=1000)
QUICK = dict(num_chains=2, num_samples=200, num_warmup=200)
SEED = 20240601

HEADER = """# Validation of exmc's NUTS against posteriordb reference posteriors

Written by `bench/validation_report.py` on {date} ({machine}). Each posterior's port
(`exmc/models/`) is sampled with `exmc.NUTS.Sampler.sample_chains`: {chains} chains x ({warmup}
warmup + {samples} draws), seed {seed}, Stan's `adapt_delta`/`max_treedepth` of the reference run
(and `exmc.models.SAMPLER_OPTIONS`: the two ODE ports run their chains `parallel="vectorized"`).
Per scalar parameter: pass when `|mean - ref_mean| <= 4 sqrt(mcse^2 + ref_mcse^2)` ("mean z" is
the left side over the combined MCSE) and `sd` within 10 % of the reference sd; and no divergences
where Stan had none. Reference: 10 chains x 1000 draws from posteriordb. A run over a subset keeps
the other rows, so rows may come from different runs: "seconds" is each row's own wall time on
a shared machine, not comparable across rows (the git log says when each was made).

"""


VARIANTS_TEXT = """## Other ports of the same posteriors

The same protocol on other ports (`exmc.models.VARIANTS`, `--variants`): arma11 and garch11 with
their recursion written as the general `scan` op (a compiled step program) instead of
`linear_recurrence`. Not counted above.
"""


#: Notes printed under the tables when the posterior has a row: what a verdict rests on where
#: the criteria cannot resolve it (measurements behind them: the commit that wrote the note).
NOTES = {
    "one_comp_mm_elim_abs-one_comp_mm_elim_abs": (
        "one_comp_mm_elim_abs fails the sd criterion on `K_m` and `V_m` because their posterior sd "
        "does not exist. For `K_m` well above the concentrations (~14 mg/L) the elimination is "
        "linear, the likelihood depends on `V_m / K_m` alone (its maximum over the other parameters: "
        "-37.56 at `K_m` = 100, -37.584 at 1e4 and 1e5), and with the half-Cauchy priors the "
        "marginal density of `K_m` falls as `K_m^-3` (`V_m` alike, along `V_m` ~ 0.08 `K_m`): the "
        "variance diverges and the sd of n draws grows like sqrt(log n), its spread shrinking only as "
        "1/log n. The reference draws show that tail (Hill index 1.9 for the top 100 `K_m`). Drawing "
        "from the reference with that tail above `K_m` = 20, 40 or 80, an exact sampler with "
        "independent draws passes both sd checks against this reference in 12-26 % of 4000-draw runs "
        "and in 12-39 % of 16,000-64,000-draw runs: no run length makes a pass likely. "
        "Measured (2 runs x 16 chains x 1000 draws, seeds 20240601 and 2; the port then at rtol/atol "
        "1e-6, a log-density within 3e-5 of the current 1e-10): sd ratio `K_m` 1.45 and 1.01 (32,000 "
        "draws pooled: 1.25, sd MCSE 18 %), `V_m` 1.38 and 1.00 (1.21); over the eight 4-chain groups "
        "`K_m` 0.51-2.18, one group within 10 % on both. The row above (port at 1e-10) has ratios 0.578 "
        "and 0.594; the same seed at 1e-6 had 1.237 and 1.144: trajectories moved by a 3e-5 change in "
        "the log-density swing the sd by a factor of 2. The 5, 25, 50, 75 and 95 % quantiles of all "
        "four parameters agree with the reference's within 2.1 combined MCSE, the means within 1.1, "
        "the sds of `k_a` and `sigma` within 2.5 %; no divergences. Reported as a failure: the "
        "criteria are not relaxed."),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="*", help="only posteriors whose name starts with one of these")
    parser.add_argument("--quick", action="store_true", help="smoke mode: short runs, no file written")
    parser.add_argument("--skip", action="append", default=[], metavar="PREFIX",
                        help="leave out posteriors whose name starts with PREFIX (repeatable)")
    parser.add_argument("--variants", action="store_true",
                        help="also sample the selected posteriors' other ports (exmc.models.VARIANTS)")
    parser.add_argument("--variants-only", action="store_true",
                        help="sample only the selected posteriors' other ports")
    parser.add_argument("--merge", nargs="+", type=Path, default=[], metavar="REPORT",
                        help="samples nothing: writes the report with these reports' rows (later files win)")
    parser.add_argument("--output", type=Path, default=OUTPUT,
                        help="the report; rows of posteriors not run this time are kept")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not posteriordb.available():
        print(f"posteriordb not found at {posteriordb.root()} (set {posteriordb.ENV_VAR})", file=sys.stderr)
        return 2
    size = QUICK if args.quick else FULL
    header = HEADER.format(date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                           machine=f"{platform.machine()}, Python {platform.python_version()}",
                           chains=size["num_chains"], warmup=size["num_warmup"],
                           samples=size["num_samples"], seed=SEED)
    if args.merge:
        merged: dict[str, str] = {}
        for path in args.merge:
            merged.update(_previous_rows(path))
        _write_rows(args.output, header, merged)
        print(f"wrote {args.output} ({len(merged)} rows)")
        return 0
    selected = [n for n in posteriordb.list_posteriors()
                if (not args.prefixes or n.startswith(tuple(args.prefixes))) and not n.startswith(tuple(args.skip))]
    posteriors = [p for p in map(posteriordb.load_posterior, selected) if p.model_name in MODELS]
    runs = [] if args.variants_only else [(posterior.name, posterior, build(posterior), sampler_options(posterior))
                                          for posterior in posteriors]
    if args.variants or args.variants_only:
        runs += [(row, posterior, VARIANTS[row][1](posterior.data()), VARIANTS[row][2]) for posterior in posteriors
                 for row in VARIANTS if VARIANTS[row][0] == posterior.name]
    checks = []
    for row, posterior, ir, options in runs:
        check = validation.run(posterior, ir, seed=SEED, **size, **validation.stan_settings(posterior), **options)
        check.posterior = row
        print(f"{row:48s} {'pass' if check.ok else 'FAIL'} {check.seconds:7.1f} s  "
              + "; ".join(check.failures()[:2]), flush=True)
        checks.append(check)
        if not args.quick:  # rewritten after every posterior: a long run interrupted keeps its rows
            _write(args.output, header, checks, len(runs))
    if args.quick:
        print(validation.markdown_table(checks))
        return 0
    print(f"wrote {args.output}")
    return 0 if all(c.ok for c in checks) else 1


def _previous_rows(output: Path) -> dict[str, str]:
    """Table rows of an earlier report, by posterior: a run over a subset replaces only its rows."""
    if not output.is_file():
        return {}
    rows = {}
    for line in output.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) > 1 and cells[1] in ("pass", "FAIL"):
            rows[cells[0]] = line
    return rows


def _write(output: Path, header: str, checks: list, total: int) -> None:
    rows = _previous_rows(output)
    table = validation.markdown_table(checks).splitlines()
    for check, line in zip(checks, table[2:]):
        rows[check.posterior] = line
    pending = "" if len(checks) == total else f" (this run: {total - len(checks)} still to go)"
    _write_rows(output, header, rows, pending)


def _write_rows(output: Path, header: str, rows: dict[str, str], pending: str = "") -> None:
    """The report from table rows by name: posteriors counted and listed, then the variants."""
    table = validation.markdown_table([]).splitlines()
    variants = sorted(k for k in rows if k in VARIANTS)
    posteriors = sorted(k for k in rows if k not in VARIANTS)
    passed = sum("| pass |" in rows[k] for k in posteriors)
    text = header + f"{passed} of {len(posteriors)} posteriors pass{pending}.\n\n"
    text += "\n".join(table[:2] + [rows[k] for k in posteriors]) + "\n"
    if variants:
        text += "\n" + VARIANTS_TEXT + "\n" + "\n".join(table[:2] + [rows[k] for k in variants]) + "\n"
    notes = [NOTES[k] for k in sorted(NOTES) if k in rows]
    if notes:
        text += "\n## Notes\n\n" + "\n\n".join(textwrap.fill(n, 100) for n in notes) + "\n"
    output.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
