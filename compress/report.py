"""The compression report of a run, in JSON and Markdown: params and MACs before and after, channels kept
per latent vector and per layer, the search outcome against the target, budgets and wall times."""
from __future__ import annotations

from pathlib import Path

import torch

from compress.config import RunConfig
from compress.families import generator_input_shape
from compress.io import atomic_write_json, atomic_write_text
from compress.machine import describe_machine, machine_text
from compress.macs import MacsModel, count_params
from compress.models.base import PrunableNetwork

MACS_CONVENTION = ("MACs: convolutions only, output elements x C_in x k^2, ConvTranspose2d at its output "
                   "resolution (the published counters' convention; see compress/macs.py)")


def compression_report(cfg: RunConfig, original: dict, generator: PrunableNetwork, search: dict,
                       timings: dict, converge_steps: int, discriminator: PrunableNetwork | None = None) -> dict:
    """Build the report dict. ``original`` = {"params", "macs", "channels"} of the unpruned generator."""
    shape = generator_input_shape(generator, cfg.image_size)
    macs_model = MacsModel(generator, shape)
    macs = macs_model.full_macs
    layer_macs = macs_model.per_layer(generator.channels)
    layers = [{"layer": c.name, "in_channels": generator.in_channels_of(c),
               "out_channels": generator.channels[c.out_latent],
               "original_in": sum(original["channels"][n] for n in c.in_latents),
               "original_out": original["channels"][c.out_latent],
               "macs": layer_macs[c.name], "macs_share": layer_macs[c.name] / max(1, macs)}
              for c in generator.prunable_convs()]
    g_status = search["status"]["G"]
    report = {
        "model": cfg.model, "dataset": cfg.dataset, "preset": cfg.preset, "input_shape": list(shape),
        "target_macs_reduction": cfg.target, "tolerance": cfg.tolerance,
        "achieved_macs_reduction": 1 - macs / original["macs"],
        "target_reached": g_status["status"] == "reached",
        # PSNR (dB) of the search network's output (as searched, masks applied) against the materialised
        # generator's on real test images; None: bit-identical (absent for baselines, which have no search)
        **({"materialization_gap_db": search.get("materialization_gap_db")} if not cfg.baseline else {}),
        "search": search,
        "original": {"params": original["params"], "macs": original["macs"]},
        "pruned": {"params": count_params(generator), "macs": macs},
        "channels": {n: {"kept": generator.channels[n], "original": original["channels"][n]}
                     for n in original["channels"]},
        "layers": layers,
        "budget": {"search_steps_used": search["steps"], "converge_steps_done": converge_steps,
                   "batch_size": cfg.batch_size,
                   # the last converging steps trained with int8 activations simulated (compress/qat.py)
                   "qat_steps": min(cfg.qat_steps, converge_steps)},
        "baseline": cfg.baseline or None,
        "seconds": dict(timings),
        "machine": f"{machine_text(describe_machine())}, torch {torch.__version__}",
        "macs_convention": MACS_CONVENTION,
    }
    if discriminator is not None:
        d_status = search["status"].get("D", {})
        report["discriminator"] = {"params": count_params(discriminator), "status": d_status.get("status"),
                                   "achieved_macs_reduction": d_status.get("reduction")}
    return report


def _gap_text(r: dict) -> str:
    if r.get("baseline"):
        return "n/a (baseline, no search)"
    if "materialization_gap_db" not in r:
        return "not measured (run from an older version)"
    gap = r["materialization_gap_db"]
    return "identical outputs" if gap is None else f"PSNR {gap:.1f} dB"


def report_markdown(r: dict) -> str:
    """Markdown rendering of :func:`compression_report`."""
    st = r["search"]["status"]["G"]
    verdict = ("reached" if r["target_reached"] else
               f"**NOT reached** ({st['status'].replace('_', ' ')})")
    if r.get("baseline"):
        verdict = f"baseline **{r['baseline']}** (no search; compare with {r['search'].get('reference_run') or 'n/a'})"
    lines = [
        f"# Compression report: {r['model']} on {r['dataset']} ({r['preset']} preset)", "",
        f"- Target: {r['target_macs_reduction']:.0%} of MACs removed (+- {r['tolerance']:.0%}): {verdict}; "
        f"achieved **{r['achieved_macs_reduction']:.1%}** after {r['search']['steps']} search steps "
        f"({r['seconds'].get('search', 0):.0f} s).",
        f"- Converging stage: {r['seconds'].get('converge', 0):.0f} s "
        f"({r['budget']['converge_steps_done']} steps; the search counts against one total budget)"
        + (f"; the last {r['budget']['qat_steps']} with int8 activations simulated (quantization-aware, --qat-steps)"
           if r["budget"].get("qat_steps") else "") + ".",
        f"- Materialisation gap (search network vs materialised generator on real test images): "
        f"{_gap_text(r)}.",
        f"- Machine: {r['machine']}.", f"- {r['macs_convention']}.", "",
        "| | params | MACs |", "|---|---|---|",
        f"| original | {r['original']['params'] / 1e6:.3f} M | {r['original']['macs'] / 1e9:.3f} G |",
        f"| pruned | {r['pruned']['params'] / 1e6:.3f} M | {r['pruned']['macs'] / 1e9:.3f} G |",
        f"| ratio | {r['pruned']['params'] / r['original']['params']:.3f} | "
        f"{r['pruned']['macs'] / r['original']['macs']:.3f} |", "",
        "## Channels kept per layer (the allocation)", "",
        "| layer | in (kept/orig) | out (kept/orig) | out kept | share of the pruned generator's MACs |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {l['layer']} | {l['in_channels']}/{l['original_in']} | {l['out_channels']}/{l['original_out']} | "
              f"{l['out_channels'] / l['original_out']:.0%} | {l.get('macs_share', 0):.1%} |" for l in r["layers"]]
    if "discriminator" in r:
        d = r["discriminator"]
        lines += ["", f"Discriminator compressed too (G+D): {d['status']}, MACs reduction "
                      f"{(d['achieved_macs_reduction'] or 0):.1%}, {d['params'] / 1e6:.3f} M params."]
    return "\n".join(lines) + "\n"


def write_report(run_dir: str | Path, report: dict) -> None:
    """Write ``compression_report.json`` and ``compression_report.md`` atomically."""
    run_dir = Path(run_dir)
    atomic_write_json(run_dir / "compression_report.json", report)
    atomic_write_text(run_dir / "compression_report.md", report_markdown(report))
