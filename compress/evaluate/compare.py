"""``python -m compress.evaluate.compare RUN_DIR... --out docs/tables/x.md``: one results table over run folders.

Each RUN_DIR must hold ``evaluation.json`` (``python -m compress.evaluate``) and ``compression_report.json``
(``python -m compress``). Columns: method, MACs (G), params (M), MACs reduction (against the unpruned
generator of the same architecture), FID, KID ± std, training wall time (search + converging stage, seconds
as measured by the trainer), training steps (search + converge, batch size), machine. Rows: the unpruned
baseline first, then per target CoroNetGAN, uniform width, random pruning. ``--paper METHOD=FID`` adds the
paper's figure beside a row whose method label starts with METHOD.

Example::

    python -m compress.evaluate.compare runs/eval/dcgan-*/ --out docs/tables/dcgan.md \
        --paper "unpruned=45.8" --paper "CoroNetGAN 50%=56.3" --paper "random pruning (50%)=68.8"
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from compress.errors import InputError
from compress.io import atomic_write_text, read_json

BASELINE_LABELS = {"unpruned": "unpruned", "uniform": "uniform width", "random": "random pruning"}
_ORDER = {"unpruned": 0, None: 1, "uniform": 2, "random": 3}


def load_row(run_dir: str | Path) -> dict:
    """One table row (a dict of raw values) from a run folder.

    Raises:
        InputError: ``evaluation.json`` or ``compression_report.json`` missing / invalid (named).
    """
    run_dir = Path(run_dir)
    ev = read_json(run_dir / "evaluation.json", f"run `python -m compress.evaluate {run_dir}` first")
    rep = read_json(run_dir / "compression_report.json", "expected a run folder finished by `python -m compress`")
    try:
        return _row(run_dir, ev, rep)
    except (KeyError, TypeError, AttributeError, ValueError, ZeroDivisionError) as exc:
        raise InputError(f"{run_dir}: evaluation.json or compression_report.json lacks what the table needs "
                         f"({type(exc).__name__}: {exc}); expected the files python -m compress and python -m "
                         "compress.evaluate write") from None


def _row(run_dir: Path, ev: dict, rep: dict) -> dict:
    baseline = rep.get("baseline") or None
    target = rep.get("target_macs_reduction")
    if baseline in ("uniform", "random"):
        ref = rep.get("search", {}).get("reference_run")
        ref_rep = Path(ref) / "compression_report.json" if ref else None
        if ref_rep is not None and ref_rep.is_file():
            target = read_json(ref_rep).get("target_macs_reduction", target)
    if baseline is None:
        method = f"CoroNetGAN {target:.0%}"
    elif baseline == "unpruned":
        method = "unpruned"
    else:
        method = f"{BASELINE_LABELS.get(baseline, baseline)} ({target:.0%})"
    seconds = rep.get("seconds", {})
    budget = rep.get("budget", {})
    search_steps = budget.get("search_steps_used", 0) or 0
    converge_steps = budget.get("converge_steps_done", 0) or 0
    return {
        "run": str(run_dir), "method": method, "baseline": baseline,
        "target": target if baseline != "unpruned" else 0.0,
        "macs": ev["macs"], "params": ev["params"],
        "macs_reduction": 1 - ev["macs"] / rep["original"]["macs"],
        "fid": ev["fid"], "kid_mean": ev["kid_mean"], "kid_std": ev["kid_std"],
        "n_fake": ev["n_fake"], "n_real": ev["n_real"], "real_set": ev.get("real_set"),
        "train_seconds": float(seconds.get("search", 0.0)) + float(seconds.get("converge", 0.0)),
        "search_steps": search_steps, "converge_steps": converge_steps,
        "batch_size": budget.get("batch_size"), "machine": rep.get("machine", ""),
        "target_reached": rep.get("target_reached"),
        "seed": read_json(run_dir / "config.json").get("seed") if (run_dir / "config.json").is_file() else None,
    }


def check_same_n(rows: list[dict], allow: bool = False) -> None:
    """Refuse rows whose FID/KID were measured on different numbers of generated or real images or on different
    real sets: FID is biased upwards at small N, so such rows do not compare (docs/evaluate.md).

    Raises:
        InputError: the rows differ and ``allow`` (``--mixed-n``) is False; names each (N, real set) and its runs.
    """
    groups: dict[tuple, list[str]] = {}
    for r in rows:
        groups.setdefault((r["n_fake"], r["n_real"], r["real_set"]), []).append(r["run"])
    if len(groups) > 1 and not allow:
        parts = "; ".join(f"{a} generated vs {b} real ({s}): {', '.join(runs)}" for (a, b, s), runs in groups.items())
        raise InputError(f"the runs were evaluated on different image sets ({parts}); FID is biased at small N, so "
                         "these rows do not compare: evaluate them again with the same --num-samples / --max-real / "
                         "--real-set, or pass --mixed-n to show them together anyway")


def _sort_key(row: dict):
    return (row["baseline"] != "unpruned", row["target"] or 0.0, _ORDER.get(row["baseline"], 9), row["run"])


def parse_paper(items: Sequence[str]) -> dict[str, str]:
    """``["CoroNetGAN 50%=56.3", ...]`` -> {"CoroNetGAN 50%": "56.3"}. Raises InputError on a missing ``=``."""
    out = {}
    for item in items:
        key, sep, value = item.rpartition("=")
        if not sep or not key:
            raise InputError(f"--paper {item!r}: expected METHOD=FID, e.g. --paper 'CoroNetGAN 50%=56.3'")
        out[key.strip()] = value.strip()
    return out


def render_table(rows: list[dict], paper: dict[str, str] | None = None, title: str | None = None) -> str:
    """Markdown table of :func:`load_row` rows (sorted), plus a line stating N and the real set."""
    paper = paper or {}
    rows = sorted(rows, key=_sort_key)
    head = ["method", "MACs (G)", "params (M)", "MACs reduction", "FID", "KID ± std"]
    if paper:
        head.append("paper FID")
    head += ["train wall (s)", "steps (search + converge) × batch", "run"]
    lines = []
    if title:
        lines += [f"### {title}", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["method"] + ("" if r["target_reached"] in (None, True) or r["baseline"] else " (target NOT reached)"),
                 f"{r['macs'] / 1e9:.4f}", f"{r['params'] / 1e6:.3f}", f"{r['macs_reduction']:.1%}",
                 f"{r['fid']:.2f}", f"{r['kid_mean']:.4f} ± {r['kid_std']:.4f}"]
        if paper:
            cells.append(next((v for k, v in paper.items() if r["method"].startswith(k)), ""))
        cells += [f"{r['train_seconds']:.0f}", f"{r['search_steps']} + {r['converge_steps']} × {r['batch_size']}",
                  f"`{Path(r['run']).name}`"]
        lines.append("| " + " | ".join(cells) + " |")
    if rows:
        ns = sorted({(r["n_fake"], r["n_real"], r["real_set"]) for r in rows})
        machines = sorted({r["machine"] for r in rows})
        lines += ["", "FID/KID: " + "; ".join(f"{a} generated vs {b} real ({s}) images" for a, b, s in ns)
                  + ". Machine: " + "; ".join(machines) + "."]
    return "\n".join(lines) + "\n"


def render_seed_table(rows: list[dict], paper: dict[str, str] | None = None, title: str | None = None) -> str:
    """Markdown table with one row per method over several seeds: KID (the mean over subsets of each run)
    as mean ± std over the seeds, FID likewise, the seeds used and the runs' MACs and params."""
    import statistics

    paper = paper or {}
    groups: dict[str, list[dict]] = {}
    for r in sorted(rows, key=_sort_key):
        groups.setdefault(r["method"], []).append(r)

    def mean_std(values: list[float], digits: int) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.fmean(values):.{digits}f} ± {sd:.{digits}f}"

    head = ["method", "MACs (G)", "params (M)", "seeds", "KID mean ± std over seeds", "FID mean ± std over seeds",
            "KID per seed"]
    if paper:
        head.append("paper FID")
    lines = [f"### {title}", ""] if title else []
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, rs in groups.items():
        rs = sorted(rs, key=lambda r: (r["seed"] is None, r["seed"]))
        cells = [method + ("" if all(r["target_reached"] in (None, True) or r["baseline"] for r in rs)
                           else " (target NOT reached in a run)"),
                 f"{statistics.fmean(r['macs'] for r in rs) / 1e9:.4f}",
                 f"{statistics.fmean(r['params'] for r in rs) / 1e6:.3f}",
                 ", ".join(str(r["seed"]) for r in rs), mean_std([r["kid_mean"] for r in rs], 4),
                 mean_std([r["fid"] for r in rs], 1), " / ".join(f"{r['kid_mean']:.4f}" for r in rs)]
        if paper:
            cells.append(next((v for k, v in paper.items() if method.startswith(k)), ""))
        lines.append("| " + " | ".join(cells) + " |")
    if rows:
        ns = sorted({(r["n_fake"], r["n_real"], r["real_set"]) for r in rows})
        lines += ["", "FID/KID of each run: " + "; ".join(f"{a} generated vs {b} real ({s}) images" for a, b, s in ns)
                  + ". Machine: " + "; ".join(sorted({r["machine"] for r in rows})) + "."]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m compress.evaluate.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    p.add_argument("--out", type=Path, help="write the Markdown table here (atomically); default: print it")
    p.add_argument("--title", help="a heading above the table")
    p.add_argument("--paper", action="append", default=[], metavar="METHOD=FID",
                   help="the paper's FID for rows whose method starts with METHOD (repeatable)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead")
    p.add_argument("--mixed-n", action="store_true",
                   help="show rows evaluated on different numbers of images or real sets in one table (FID is "
                        "biased at small N: refused by default)")
    p.add_argument("--over-seeds", action="store_true",
                   help="one row per method: KID and FID as mean ± std over the runs' seeds")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; 0, or 2 with ``error: ...`` on bad input (:func:`compress.cli_errors.run_cli`)."""
    from compress.cli_errors import run_cli

    return run_cli(lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    rows = [load_row(d) for d in args.run_dirs]
    paper = parse_paper(args.paper)
    check_same_n(rows, args.mixed_n)
    if args.out is not None and args.out.is_dir():
        raise InputError(f"--out {args.out}: a folder; expected a file for the Markdown table")
    if args.json:
        print(json.dumps(sorted(rows, key=_sort_key), indent=2))
        return 0
    text = (render_seed_table if args.over_seeds else render_table)(rows, paper, args.title)
    if args.out:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
