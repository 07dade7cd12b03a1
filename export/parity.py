"""The figures of an exported .tflite against PyTorch (PSNR in dB, max abs diff), in every runtime, and the gates.

PSNR is taken over the generator's value range [-1, 1] (peak-to-peak 2, :func:`quantize.metrics.psnr_db`):
``PSNR = 10 log10(2**2 / MSE)`` with the MSE pooled over every pixel of every input of a set (``psnr_db``), and
per image (``min_image_psnr_db``, the worst). ``max_abs_diff`` is the largest |TFLite - PyTorch| over the same
pixels (units of the [-1, 1] range). Identical outputs give ``PSNR = inf`` (written as the string "inf" in JSON).

Each file is run on two input sets: the run's held-out images (test split; DCGAN: noise seed 1) and, for image
generators, the unseen photos of :mod:`export.photos`; and in every runtime of :data:`quantize.litert.RUNTIMES`
(LiteRT, whose figures are the file's, and tflite-runtime 2.14, which must load and run the file as well).

Quality gates (:func:`gate_failures`; issue 4, item 3, and issue 15):

* pooled PSNR on the held-out inputs and on the unseen photos: fp32 >= 60 dB, fp16 >= 45 dB, int8 >= 30 dB
  (:data:`GATES_DB`), in LiteRT and in tflite-runtime;
* int8, worst single image of either set >= 27 dB (:data:`MIN_IMAGE_GATES_DB`), in both runtimes;
* every runtime loads and runs the file;
* int8: no hybrid op (float activations against int8 weights) and, for generators above
  :data:`SIZE_GATE_MIN_PARAMS` parameters, a file at most :data:`INT8_SIZE_RATIO` times the fp32 file.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from quantize.litert import DEFAULT_RUNTIME, RUNTIMES, make_interpreter, run_tflite, runtime_version
from quantize.metrics import psnr_db

#: Pooled PSNR gates (dB) against the PyTorch generator, images in [-1, 1] (issue 4 item 3, issue 15): fp32 60
#: (a faithful conversion differs by float rounding only), fp16 45 (half-precision weights: about 11 bits of
#: mantissa), int8 30 (8-bit steps over the fixed [-1, 1] output range: 0.0078, step^2/12 alone is 59 dB, so 30 dB
#: leaves the accumulated activation rounding of a deep generator while staying visually lossless).
GATES_DB = {"fp32": 60.0, "fp16": 45.0, "int8": 30.0}
#: Worst single image (held-out or unseen) of an int8 file, dB.
MIN_IMAGE_GATES_DB = {"int8": 27.0}
#: Largest int8 size / fp32 size: int8 weights are a quarter of fp32 ones; 0.30 leaves room for the int32 biases,
#: quantization parameters and graph, not for convolutions kept in float.
INT8_SIZE_RATIO = 0.30
#: Generators with fewer parameters than this are exempt from the size gate (their file is mostly graph).
SIZE_GATE_MIN_PARAMS = 100_000


def json_float(x: float) -> float | str:
    """A float for JSON: inf/-inf as strings."""
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


def float_from_json(x) -> float:
    """The float of a JSON figure written by :func:`json_float` ("inf" / "-inf" strings back to infinities)."""
    return float(x) if not isinstance(x, str) else (math.inf if x == "inf" else -math.inf)


def io_details(path: str | Path) -> dict:
    """Names, shapes, dtypes, quantization and, for integer tensors, the representable value range
    ``[(q_min - zero_point) * scale, (q_max - zero_point) * scale]`` of the model's (single) input and output."""
    it = make_interpreter(path, 1)
    sig = it.get_signature_list().get("serving_default", {})

    def one(d: dict, sig_name: str | None) -> dict:
        scale, zero = d["quantization"]
        out = {"name": sig_name or d["name"], "tensor_name": d["name"], "shape": [int(s) for s in d["shape"]],
               "dtype": np.dtype(d["dtype"]).name, "layout": "NHWC",
               "quantization": {"scale": float(scale), "zero_point": int(zero)} if scale else None}
        if scale:
            info = np.iinfo(d["dtype"])
            out["value_range"] = [(int(info.min) - int(zero)) * float(scale),
                                  (int(info.max) - int(zero)) * float(scale)]
        return out

    ins, outs = sig.get("inputs", [None]), sig.get("outputs", [None])
    return {"input": one(it.get_input_details()[0], ins[0] if ins else None),
            "output": one(it.get_output_details()[0], outs[0] if outs else None)}


def parity(ref_nchw: np.ndarray, out_nchw: np.ndarray) -> dict:
    """{"psnr_db", "min_image_psnr_db", "worst_image" (index), "max_abs_diff"} of ``out`` against ``ref`` (both
    (N, C, H, W))."""
    per_image = [psnr_db(r, o) for r, o in zip(ref_nchw, out_nchw)]
    return {"psnr_db": psnr_db(ref_nchw, out_nchw), "min_image_psnr_db": min(per_image),
            "worst_image": int(np.argmin(per_image)),
            "max_abs_diff": float(np.abs(ref_nchw.astype(np.float64) - out_nchw).max())}


def _json_figures(fig: dict) -> dict:
    return {"psnr_db": json_float(fig["psnr_db"]), "min_image_psnr_db": json_float(fig["min_image_psnr_db"]),
            "max_abs_diff": fig["max_abs_diff"]}


def file_figures(path: str | Path, heldout: np.ndarray, reference: np.ndarray, unseen=None,
                 unseen_reference: np.ndarray | None = None, threads: int = 2) -> dict:
    """The figures of one .tflite (module docstring).

    Args:
        path: the .tflite.
        heldout, reference: held-out inputs (N, C, H, W) and the PyTorch fp32 outputs on them.
        unseen, unseen_reference: an :class:`export.photos.UnseenSet` and the PyTorch outputs on its inputs, or None.
        threads: interpreter threads.
    Returns:
        {"psnr_db", "min_image_psnr_db", "max_abs_diff"} (LiteRT, held-out), "runtimes": {runtime: {"version",
        "ok", and "psnr_db", "min_image_psnr_db", "max_abs_diff" (held-out) and "unseen" or "error"}}, and with
        ``unseen`` "unseen": {"psnr_db", "min_image_psnr_db", "worst_image" (name), "max_abs_diff", "count"}
        (LiteRT; each runtime's own under "runtimes").
    Raises:
        RuntimeError: LiteRT cannot run the file (the export cannot measure it at all).
    """
    runtimes, primary, primary_unseen = {}, None, None
    with_unseen = unseen is not None and len(unseen.inputs) > 0
    for rt in RUNTIMES:
        entry = {"version": runtime_version(rt)}
        try:
            fig = parity(reference, run_tflite(path, heldout, threads, rt))
            fig_unseen = parity(unseen_reference, run_tflite(path, unseen.inputs, threads, rt)) if with_unseen \
                else None
        except Exception as exc:  # the runtimes raise RuntimeError/ValueError/ImportError: all mean "does not run"
            if rt == DEFAULT_RUNTIME:
                raise RuntimeError(f"{Path(path).name} does not run in {rt}: {type(exc).__name__}: {exc}") from exc
            runtimes[rt] = {**entry, "ok": False, "error": f"{type(exc).__name__}: {str(exc).strip()[:600]}"}
            continue
        runtimes[rt] = {**entry, "ok": True, **_json_figures(fig)}
        if fig_unseen is not None:
            runtimes[rt]["unseen"] = _unseen_figures(fig_unseen, unseen)
        if rt == DEFAULT_RUNTIME:
            primary, primary_unseen = fig, fig_unseen
    out = {**_json_figures(primary), "runtimes": runtimes}
    if primary_unseen is not None:
        out["unseen"] = _unseen_figures(primary_unseen, unseen)
    return out


def _unseen_figures(fig: dict, unseen) -> dict:
    return {**_json_figures(fig), "worst_image": unseen.names[fig["worst_image"]], "count": int(len(unseen.inputs))}


def file_title(entry: dict) -> str:
    """A manifest file entry as it is shown: its path, with its label where that says more than the dtype
    (``generator_int8.tflite (int8 (mixed: 1 of 18 convolutions float))``; issue 15: a mixed file is labelled
    wherever it is shown).

    Raises:
        KeyError: an entry without ``path``.
    """
    label = entry.get("label") or entry.get("dtype")
    return entry["path"] if label == entry.get("dtype") else f"{entry['path']} ({label})"


def gate_failures(files: list[dict], params: int, onnx_max_abs_diff: float) -> list[str]:
    """Every gate (module docstring) that a manifest's file entries miss, one readable line each.

    ``params``: parameters of the generator (size gate); ``onnx_max_abs_diff``: the ONNX gate (onnxruntime vs
    PyTorch)."""
    failures = []
    for e in files:
        if e["dtype"] == "onnx":
            if not e["max_abs_diff"] <= onnx_max_abs_diff:
                failures.append(f"generator.onnx: onnxruntime vs PyTorch max abs diff {e['max_abs_diff']:.3g} "
                                f"> {onnx_max_abs_diff:g}")
            continue
        name = file_title(e)
        failures += _set_failures(name, e, e, "")  # LiteRT's figures are the file's
        for rt, r in (e.get("runtimes") or {}).items():
            if not r["ok"]:
                failures.append(f"{name}: does not run in {rt} {r.get('version')}: {r['error'][:200]}")
            elif rt != DEFAULT_RUNTIME:
                failures += _set_failures(name, e, r, f" in {rt}")
        if e["dtype"] == "int8":
            if e.get("hybrid_ops"):
                failures.append(f"{name}: hybrid ops (float activations, int8 weights): {', '.join(e['hybrid_ops'])}")
            ratio = e.get("size_ratio_to_fp32")
            if ratio is not None and params > SIZE_GATE_MIN_PARAMS and not ratio <= INT8_SIZE_RATIO:
                detail = _size_detail(e.get("file_bytes"))
                failures.append(f"{name}: {ratio:.4f} x the fp32 file > {INT8_SIZE_RATIO:.2f} x"
                                + (f" ({detail[2:]})" if detail else ""))
    return failures


def int8_target_hint(entry: dict) -> str | None:
    """What to try when an int8 file missed a quality gate although its validation inputs met the float selection's
    targets: a higher ``--int8-target-db``.

    The validation inputs are training images of the run and, for pix2pix, edge maps drawn from its training photos
    (:func:`export.int8_file.validation_inputs`); the gate inputs are images the generator never saw, so a file can
    meet the selection's targets on validation and miss the gates (docs/export.md, "Session 17": 1.6-5.7 dB
    lower on the gate inputs). Assuming the same drop, the selection reaches the gates with the target
    ``T = max(G + d_pooled, W + A + d_worst)``: G = 30 dB and W = 27 dB the int8 gates
    (:data:`GATES_DB`, :data:`MIN_IMAGE_GATES_DB`), A = 3 dB the selection's worst-input allowance
    (:data:`quantize.sensitivity.WORST_IMAGE_ALLOWANCE_DB`), d the validation figure minus the lowest figure of the
    gate sets (held-out and unseen, every runtime), pooled and worst input.

    Args:
        entry: an int8 file's manifest entry (``float_selection``, held-out, ``unseen``, ``runtimes``).
    Returns:
        One line naming the flag and T (rounded up to a whole dB), and for a file that is not 16x8
        ``--int8-activations int16`` as the other way (:mod:`quantize.int16x8`); or None: not int8, no quality gate
        missed, the selection off (target <= 0) or without a measurement, or the selection short of its own target
        (the size gate or the candidates stopped it: a higher target does not help) unless the file was made with
        ``--int8-activations int8`` (then the line names int16 alone). With the targets met and a gate missed, T is
        always above the target used.
    """
    from quantize.sensitivity import WORST_IMAGE_ALLOWANCE_DB

    selection = entry.get("float_selection") or {}
    target = selection.get("target_db") or 0.0
    chosen = [t for t in selection.get("trajectory") or []
              if t.get("float_convolutions") == selection.get("float_convolutions", 0)]
    if entry.get("dtype") != "int8" or target <= 0 or not chosen:
        return None
    sets = [entry] + [r for r in (entry.get("runtimes") or {}).values() if r.get("ok")]
    sets += [s["unseen"] for s in list(sets) if s.get("unseen")]
    pooled = min(float_from_json(s["psnr_db"]) for s in sets if s.get("psnr_db") is not None)
    worst = min(float_from_json(s["min_image_psnr_db"]) for s in sets if s.get("min_image_psnr_db") is not None)
    if pooled >= GATES_DB["int8"] and worst >= MIN_IMAGE_GATES_DB["int8"]:
        return None
    val_pooled = float_from_json(chosen[0]["validation_psnr_db"])
    val_worst = float_from_json(chosen[0]["validation_worst_db"])
    sixteen = "" if "16x8" in entry.get("label", "") else \
        "; or --int8-activations int16 (a 16x8 file: int16 activations, CPU kernels only, no GPU delegate)"
    if val_pooled < target or val_worst < target - WORST_IMAGE_ALLOWANCE_DB:
        # the selection fell short of its target (size gate, candidates): a higher one does not help; int16
        # activations may, unless auto already measured them
        choice = entry.get("activations_choice") or {}
        if sixteen and choice.get("mode") == "int8":
            return f"{file_title(entry)}: the float selection fell short of its targets on validation " \
                   f"({val_pooled:.2f} / {val_worst:.2f} dB){sixteen}"
        return None
    needed = max(GATES_DB["int8"] + val_pooled - pooled,
                 MIN_IMAGE_GATES_DB["int8"] + WORST_IMAGE_ALLOWANCE_DB + val_worst - worst)
    if not math.isfinite(needed):   # an infinite validation figure (identical outputs): no drop to scale
        return None
    suggested = min(math.ceil(needed), 100)
    return (f"{file_title(entry)}: its validation inputs measured {val_pooled:.2f} / {val_worst:.2f} dB (pooled / "
            f"worst), the gate inputs {pooled:.2f} / {worst:.2f} dB; --int8-target-db {suggested} asks the float "
            f"selection for that much more (now {target:g}; the size gate still applies){sixteen}")


def _set_failures(name: str, entry: dict, figures: dict, where: str) -> list[str]:
    """The pooled and worst-image gates of ``entry`` against ``figures`` (held-out, and its ``unseen`` block) of one
    runtime; ``where`` names a runtime other than the file's own (`` in tflite-runtime``), whose messages then
    leave out the max abs diff."""
    # this code's gates, not the ones stored with an entry of an earlier export (a skipped or kept file is judged
    # as a new one would be); the stored values are the fallback for a dtype without a gate here
    gate = GATES_DB.get(entry["dtype"], entry.get("gate_db"))
    worst_gate = MIN_IMAGE_GATES_DB.get(entry["dtype"], entry.get("min_image_gate_db"))
    out = []
    for label, fig in [("held-out", figures)] + ([("unseen photos", figures["unseen"])] if figures.get("unseen")
                                                 else []):
        out += figure_failures(name, fig, label, gate, worst_gate, where)
    return out


def figure_failures(name: str, fig: dict, label: str, gate: float, worst_gate: float | None,
                    where: str = "") -> list[str]:
    """The gates one set of figures misses, one line each.

    Args:
        name: the file as shown (:func:`file_title`).
        fig: {"psnr_db", "max_abs_diff", and optionally "min_image_psnr_db", "worst_image"} of one input set in one
            runtime (PSNR in dB, JSON form: :func:`json_float`).
        label: the input set in words (``held-out``, ``unseen photos``, ``--photos``).
        gate, worst_gate: pooled and worst-image gates (dB); ``worst_gate`` None: none (fp32, fp16).
        where: `` in RUNTIME`` for a runtime other than the file's own, whose lines leave out the max abs diff.
    """
    out = []
    psnr = float_from_json(fig["psnr_db"])
    if not psnr >= gate:
        diff = "" if where else f" (max abs diff {fig['max_abs_diff']:.3g})"
        out.append(f"{name}: PSNR {psnr:.2f} dB on the {label} inputs{where} < gate {gate:.0f} dB{diff}")
    if worst_gate is not None and fig.get("min_image_psnr_db") is not None \
            and not float_from_json(fig["min_image_psnr_db"]) >= worst_gate:
        which = f" ({fig['worst_image']})" if fig.get("worst_image") else ""
        out.append(f"{name}: worst {label} image{which} {float_from_json(fig['min_image_psnr_db']):.2f} dB{where} "
                   f"< gate {worst_gate:.0f} dB")
    return out


def format_db(x) -> str:
    """A PSNR figure (dB) as printed: two decimals, ``inf``; a string (JSON "inf", a placeholder) as it is."""
    if isinstance(x, str):
        return x
    return "inf" if math.isinf(x) else f"{x:.2f}"


def _size_detail(fb: dict | None) -> str:
    """``; int8 data N B, other constants N B, quantization parameters N B, tensor names N B, graph N B (n ops, n
    tensors)`` from a :func:`quantize.composition.file_bytes` record (bytes): what the file holds beside its int8
    weights; ``""`` without a record (manifests written before it existed)."""
    if not fb:
        return ""
    return (f"; int8 data {fb['constant_data'].get('int8', 0):,} B, other constants "
            f"{sum(v for k, v in fb['constant_data'].items() if k != 'int8'):,} B, quantization parameters "
            f"{fb['quantization_parameters']:,} B, tensor names {fb['tensor_names']:,} B, graph {fb['graph']:,} B "
            f"({fb['operators']} ops, {fb['tensors']} tensors)")
