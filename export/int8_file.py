"""The int8 .tflite of an export: equalised generator -> ONNX -> onnx2tf SavedModel -> :mod:`quantize`.

The fp32/fp16 files are the generator as trained (``generator.onnx``). The int8 file is made from a function-
preserving rewrite of it (:func:`quantize.equalize.equalise_for_int8`: BatchNorm folded, InstanceNorm inputs and
cross-layer ranges equalised on the representative dataset), exported and converted on its own; its ONNX is
checked against the *original* PyTorch generator with the ONNX gate (onnxruntime, max abs diff <= 1e-4), so an
equalisation that changed the function stops the export. A generator with skip concatenations (the U-Net) gets two
equalised versions, with and without the concatenation range matching, and keeps the int8 file that measures
closer to the gates on the validation inputs (:func:`choose_concatenation_matching`). Every choice measures files
calibrated without those validation inputs (:func:`choice_inputs`); the installed file is calibrated on all.
``ExportOptions.int8_equalise = False`` quantizes the plain generator's SavedModel instead (the comparison in
docs/export.md).

Input/output ranges are fixed, not calibrated (:func:`quantize.int8.fix_io_ranges`): images [-1, 1]; DCGAN's
noise input z ~ N(0, 1) gets :data:`NOISE_RANGE`.

Weight scales (``ExportOptions.int8_weights``): "auto" (the default) makes the per-channel file and, for a
generator above :data:`export.parity.SIZE_GATE_MIN_PARAMS` parameters whose finished per-channel file misses the
size gate, the per-tensor file as well; the per-tensor file is kept when it meets the size gate and the int8 gates
on the validation inputs with no more convolutions in float (:func:`choose_weight_scales`). "per-channel" and
"per-tensor" make that file alone. At about 0.1 M parameters the per-channel scales' quantization parameters
(12 bytes per output channel) decide the ratio (docs/export.md, "Size, what else was tried").

Activations (``ExportOptions.int8_activations``): "auto" (the default) installs the int8 file unless its float
selection ended short of its targets and the finished file misses the int8 gates on the validation inputs; then
it makes the 16x8 file (:mod:`quantize.int16x8`: int8 weights, int16 activations) from the same equalised
SavedModel, calibrated without the validation inputs, and installs it (calibrated on all) when it meets the gates
there within the size gate (:func:`choose_activations`); its label is ``int8 (16x8: int16 activations)`` and the
GPU delegate cannot run it (docs/export.md, "Session 20"). "int16" makes only the 16x8 file; "int8" never makes it.
"""
from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from compress.errors import first_line
from compress.families import get_family
from compress.macs import count_params
from export.finish import finished_size
from export.onnx_export import check_onnx, export_onnx
from export.options import ExportOptions
from export.parity import (GATES_DB, INT8_SIZE_RATIO, MIN_IMAGE_GATES_DB, SIZE_GATE_MIN_PARAMS, float_from_json,
                           parity)
from quantize import FLOAT_OPS, quantize_saved_model
from quantize.composition import describe
from quantize.equalize import equalise_for_int8
from quantize.int8 import IMAGE_RANGE
from quantize.int16x8 import quantize_16x8
from quantize.litert import run_tflite
from quantize.sensitivity import DEFAULT_VALIDATION_COUNT

LOGGER = logging.getLogger("coronetgan.export")

#: Fixed int8 range of a N(0, 1) noise input: +-4 sigma (an entry falls outside with probability 6.3e-5).
NOISE_RANGE = (-4.0, 4.0)


@dataclass(frozen=True)
class ValidationInputs:
    """The inputs the export's choices between int8 files are measured on (:func:`validation_inputs`).

    Attributes:
        inputs: (N, C, H, W) float32 in the generator's scaling, in this order: ``source_count`` source inputs,
            ``target_count`` target-domain photos, then ``drawn_count`` inputs drawn from those photos.
        source_count, target_count: how many come from each part of the representative dataset.
        drawn_kinds: the kinds drawn (``("edges",)`` for pix2pix), in order.
    """

    inputs: np.ndarray
    source_count: int
    target_count: int
    drawn_kinds: tuple[str, ...] = ()

    @property
    def drawn_count(self) -> int:
        """Inputs drawn from the target-domain photos with :func:`export.photos.drawn_inputs` (not representative
        inputs: no file is calibrated on them)."""
        return len(self.inputs) - self.source_count - self.target_count

    def to_json(self) -> dict:
        """Counts for the manifest."""
        return {"validation_count": int(len(self.inputs)), "validation_target_domain_count": self.target_count,
                "validation_drawn_count": self.drawn_count, "validation_drawn_kinds": list(self.drawn_kinds)}


def drawn_validation_kinds(family: str | None) -> tuple[str, ...]:
    """The unseen input kinds a family's validation inputs draw from its target-domain training photos: the kinds
    of its registry entry's ``unseen_input_kinds`` other than ``"photos"`` (pix2pix: ``("edges",)``), when its
    representative dataset holds such photos (``calibrates_with_target_domain``); ``()`` otherwise or for None.

    Raises InputError for an unregistered family name.
    """
    if family is None:
        return ()
    entry = get_family(family, "architecture family")
    if not entry.calibrates_with_target_domain:
        return ()
    return tuple(k for k in entry.unseen_input_kinds if k != "photos")


def validation_inputs(sets, drawn_kinds: Sequence[str] = ()) -> ValidationInputs:
    """The inputs the export's choices between int8 files are measured on (never the gate sets). The source inputs
    and photos among them are representative inputs, but the files a choice measures are calibrated without them
    (:func:`choice_inputs`).

    Why drawn inputs: the unseen gates of pix2pix measure edge maps that :mod:`export.photos` draws from photos with
    Canny, unlike the dataset's edge maps, and the worst of 15 of them; validated on 16 training inputs, the choices
    stopped at a file that missed that gate by 4 dB (docs/export.md, "Session 19"). The same recipe applied to the
    run's own training photos gives many inputs of that kind without touching a gate input, and no file is
    calibrated on them.

    Args:
        sets: :class:`export.inputs.InputSets` whose calibration set is the representative dataset: source-domain
            inputs first, then ``description["target_domain_count"]`` target-domain images (pix2pix: the photos of
            the same training pairs; :mod:`export.representative`).
        drawn_kinds: kinds of :func:`export.photos.drawn_inputs` to draw from the validation photos
            (:func:`drawn_validation_kinds`); ignored when the set has no target-domain images.
    Returns:
        :class:`ValidationInputs`: the first source inputs and, when the set has target-domain images, the first
        of those as half of :data:`quantize.sensitivity.DEFAULT_VALIDATION_COUNT` (16), so that a choice sees both
        kinds of input the unseen gates measure (edge maps and photos), then, per drawn kind, one input drawn from
        every target-domain image of the set (pix2pix: 100), since a worst-input gate is a tail statistic that 8
        inputs do not reach (docs/export.md, "Session 19").
    """
    from export.photos import drawn_inputs

    source, target = _representative_parts(sets)
    if len(target) == 0 or len(source) == 0:
        inputs = sets.calibration[:DEFAULT_VALIDATION_COUNT]
        return ValidationInputs(inputs, len(inputs), 0)
    photos = min(DEFAULT_VALIDATION_COUNT // 2, len(target))
    edges = min(DEFAULT_VALIDATION_COUNT - photos, len(source))
    drawn = [drawn_inputs(kind, target) for kind in drawn_kinds]
    inputs = np.concatenate([source[:edges], target[:photos], *drawn]).astype(np.float32)
    return ValidationInputs(inputs, edges, photos, tuple(drawn_kinds))


def choice_inputs(sets) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The representative dataset and the source inputs without the validation inputs of
    :func:`validation_inputs`: what the files the export's choices are measured on are calibrated and
    bias-corrected on (``choice_calibration_nchw``, ``choice_correction_nchw`` of
    :func:`quantize.quantize_saved_model`), so that a choice is not scored on inputs that set the ranges.

    Args:
        sets: :class:`export.inputs.InputSets` as for :func:`validation_inputs`.
    Returns:
        ((N - V, C, H, W) float32 calibration inputs, (S - V_s, C, H, W) float32 source inputs), or (None, None)
        when fewer than :data:`quantize.sensitivity.DEFAULT_VALIDATION_COUNT` source inputs would be left (the
        choices then calibrate on every input, as the final file does; the manifest's
        ``float_selection.choice_calibration_count`` says which). Drawn validation inputs are not representative
        inputs, so there is nothing of them to hold back.
    """
    source, target = _representative_parts(sets)
    validation = validation_inputs(sets)
    edges, photos = validation.source_count, validation.target_count
    if len(source) - edges < DEFAULT_VALIDATION_COUNT:
        return None, None
    rest = source[edges:]
    return np.concatenate([rest, target[photos:]]) if len(target) else rest, rest


def _calibrated_on(choice_calibration: np.ndarray | None) -> str:
    """What the files a choice measured were calibrated on, for the manifest."""
    if choice_calibration is None:
        return "every representative input (too few to hold the validation inputs back)"
    return f"the {len(choice_calibration)} representative inputs that are not validation inputs"


def _representative_parts(sets) -> tuple[np.ndarray, np.ndarray]:
    """(source-domain inputs, target-domain images) of a representative dataset (:func:`validation_inputs`)."""
    target = int(sets.description.get("target_domain_count", 0) or 0)
    split = max(len(sets.calibration) - target, 0)
    return sets.calibration[:split], sets.calibration[split:]


def validation_figures(content: bytes, inputs_nchw: np.ndarray, reference_nchw: np.ndarray,
                       threads: int = 2) -> dict:
    """How an int8 candidate file does on the validation inputs (calibration inputs, never the gate sets).

    Args:
        content: the .tflite bytes.
        inputs_nchw: validation inputs (N, C, H, W) float32 in the generator's scaling.
        reference_nchw: the PyTorch generator's outputs for them (N, C, H, W).
        threads: LiteRT threads.
    Returns:
        {"validation_psnr_db" (pooled), "validation_worst_db" (worst input), in dB against the generator over
        the [-1, 1] range (:func:`export.parity.parity`), "float_convolutions": convolutions computing in
        float or hybrid (count, :func:`quantize.composition.describe`)}.
    """
    fig = parity(reference_nchw, run_tflite(content, inputs_nchw, threads))
    comp = describe(content)
    return {"validation_psnr_db": fig["psnr_db"], "validation_worst_db": fig["min_image_psnr_db"],
            "float_convolutions": len(comp["float_convolutions"]) + len(comp["hybrid_ops"])}


def choose_weight_scales(candidates: dict[str, dict], params: int) -> tuple[str, str]:
    """Which int8 weight scales ``--int8-weights auto`` keeps.

    Args:
        candidates: {"per-channel": figures, and "per-tensor": figures when that file was made}, figures =
            {"size_ratio_to_fp32" (installed int8 bytes / installed fp32 bytes), "validation": the dict of
            :func:`validation_figures`, or None when not measured}.
        params: the generator's parameter count (the size gate applies above
            :data:`export.parity.SIZE_GATE_MIN_PARAMS`).
    Returns:
        ("per-channel" | "per-tensor", why, in words). Per-tensor only when the per-channel file misses the size
        gate (:data:`export.parity.INT8_SIZE_RATIO`) and the per-tensor file meets it, reaches the int8 gates
        (:data:`export.parity.GATES_DB`, :data:`export.parity.MIN_IMAGE_GATES_DB`: 30 dB pooled, 27 dB worst
        input) on the validation inputs and keeps no more convolutions in float than the per-channel one.
    """
    pc = candidates["per-channel"]
    if params <= SIZE_GATE_MIN_PARAMS:
        return "per-channel", f"{params:,} parameters: the size gate does not apply"
    if pc["size_ratio_to_fp32"] <= INT8_SIZE_RATIO:
        return "per-channel", f"per-channel meets the size gate ({pc['size_ratio_to_fp32']:.4f} x fp32)"
    pt = candidates.get("per-tensor")
    if pt is None:
        return "per-channel", "per-tensor was not made"
    miss = f"per-channel misses the size gate ({pc['size_ratio_to_fp32']:.4f} x fp32 > {INT8_SIZE_RATIO})"
    v, v_pc = pt["validation"], pc["validation"]
    if v is None or v_pc is None:
        return "per-channel", f"{miss}; the candidates were not measured on validation inputs"
    if pt["size_ratio_to_fp32"] > INT8_SIZE_RATIO:
        return "per-channel", f"{miss}; per-tensor misses it too ({pt['size_ratio_to_fp32']:.4f} x): the " \
                              "better-quality file is kept"
    if v["float_convolutions"] > v_pc["float_convolutions"]:
        return "per-channel", f"{miss}; per-tensor keeps {v['float_convolutions']} convolution(s) in float " \
                              f"against {v_pc['float_convolutions']}"
    pooled, worst = GATES_DB["int8"], MIN_IMAGE_GATES_DB["int8"]
    if v["validation_psnr_db"] < pooled or v["validation_worst_db"] < worst:
        return "per-channel", f"{miss}; per-tensor misses the int8 gates on validation ({v['validation_psnr_db']:.2f}" \
                              f" / {v['validation_worst_db']:.2f} dB against {pooled:g} / {worst:g} dB)"
    return "per-tensor", f"{miss}; per-tensor is {pt['size_ratio_to_fp32']:.4f} x and reaches " \
                         f"{v['validation_psnr_db']:.2f} / {v['validation_worst_db']:.2f} dB on validation " \
                         f"(gates {pooled:g} / {worst:g} dB; per-channel {v_pc['validation_psnr_db']:.2f} / " \
                         f"{v_pc['validation_worst_db']:.2f} dB)"


def gate_margin(figures: dict) -> float:
    """The smaller margin (dB) of a candidate's validation figures (:func:`validation_figures`) to the int8 gates:
    ``min(pooled - 30, worst input - 27)`` (:data:`export.parity.GATES_DB`, :data:`export.parity.MIN_IMAGE_GATES_DB`);
    negative when a gate is missed."""
    return min(figures["validation_psnr_db"] - GATES_DB["int8"],
               figures["validation_worst_db"] - MIN_IMAGE_GATES_DB["int8"])


def choose_concatenation_matching(figures: dict[str, dict]) -> bool:
    """Whether the int8 file keeps the concatenation range matching
    (:func:`quantize.equalize.match_concatenation_ranges`).

    Matching the parts of a skip concatenation gives the quieter part the resolution the shared int8 scale took from
    it, but how much that is worth depends on the generator (docs/export.md, "Concatenation range matching":
    +5.3 dB pooled on validation for one pruned U-Net, -6.4 dB for a narrow one), so both files are made and measured.

    Args:
        figures: {"matched": ..., "unmatched": ...}, each the dict of :func:`validation_figures` on the same
            validation inputs.
    Returns:
        True when only the matched file meets the gates on validation (:func:`gate_margin` >= 0); when both do,
        when it keeps fewer convolutions in float, or as many and has a larger margin; when neither does, when its
        margin is larger (a file with no float convolution that misses the gates is no better than one that
        reaches them with one in float: docs/export.md, "Session 16"). A tie keeps the unmatched file.
    """
    def key(v: dict) -> tuple[bool, int, float]:
        meets = gate_margin(v) >= 0
        return meets, -v["float_convolutions"] if meets else 0, gate_margin(v)

    return key(figures["matched"]) > key(figures["unmatched"])


def selection_missed(selection: dict | None) -> bool:
    """Whether the float selection (:func:`quantize.sensitivity.select_float_nodes` report) ended short of its
    targets: the trial file it chose misses the pooled or the worst-input target on the validation inputs. False
    when it did not run (``--int8-target-db 0``, or nothing to choose from)."""
    steps = (selection or {}).get("trajectory") or []
    if not steps:
        return False
    chosen = steps[min(int(selection.get("float_convolutions", 0)), len(steps) - 1)]
    return float_from_json(chosen["validation_psnr_db"]) < selection["target_db"] or \
        float_from_json(chosen["validation_worst_db"]) < selection["worst_target_db"]


def choose_activations(int8: dict, int16x8: dict | None, params: int) -> tuple[str, str]:
    """Which file ``--int8-activations auto`` installs when the int8 file's float selection missed its targets.

    Args:
        int8: :func:`validation_figures` of the int8 file (float selection included).
        int16x8: :func:`validation_figures` of the 16x8 file (:mod:`quantize.int16x8`) with its
            ``size_ratio_to_fp32`` (installed bytes / installed fp32 bytes), or None when it could not be made.
        params: the generator's parameter count (the size gate applies above
            :data:`export.parity.SIZE_GATE_MIN_PARAMS`).
    Returns:
        ("int8" | "int16x8", why, in words). The 16x8 file only when the int8 file misses the int8 gates on the
        validation inputs (:func:`gate_margin` < 0) and the 16x8 file meets them within the size gate: it runs on
        the CPU kernels only (no XNNPACK, no GPU delegate), so it is worth installing only where int8 cannot do.
    """
    m8 = gate_margin(int8)
    if m8 >= 0:
        return "int8", f"the int8 file meets the int8 gates on validation (margin {m8:.2f} dB)"
    if int16x8 is None:
        return "int8", "the 16x8 file could not be made"
    m16 = gate_margin(int16x8)
    figures = f"{int16x8['validation_psnr_db']:.2f} / {int16x8['validation_worst_db']:.2f} dB against " \
              f"{int8['validation_psnr_db']:.2f} / {int8['validation_worst_db']:.2f} dB for int8"
    if m16 < 0:
        return "int8", f"the 16x8 file misses the int8 gates on validation too ({figures})"
    if params > SIZE_GATE_MIN_PARAMS and int16x8["size_ratio_to_fp32"] > INT8_SIZE_RATIO:
        return "int8", f"the 16x8 file meets the gates on validation ({figures}) but misses the size gate " \
                       f"({int16x8['size_ratio_to_fp32']:.4f} x fp32 > {INT8_SIZE_RATIO})"
    return "int16x8", f"the int8 file misses the int8 gates on validation even with its float selection; the 16x8 " \
                      f"file meets them ({figures}, {int16x8['size_ratio_to_fp32']:.4f} x fp32)"


def _io_16x8(int8_io: str) -> str | None:
    """The 16x8 file's I/O type for ``--int8-io``: int8 -> int16, float32 -> float32, uint8 -> None (none)."""
    return {"int8": "int16", "float32": "float32"}.get(int8_io)


def build_int8_file(staging: Path, generator: torch.nn.Module, shape: tuple, sets, options: ExportOptions,
                    plain_saved_model: Path, sample_data: np.ndarray, fp32_size: int,
                    family: str | None = None) -> tuple[Path, float, dict]:
    """Make the int8 file in ``staging`` (module docstring).

    Args:
        staging: the export's staging folder (work files go to ``staging/int8_work``).
        generator: the PyTorch generator (eval mode), not modified.
        shape: its ONNX input shape (1, C, H, W).
        sets: :class:`export.inputs.InputSets` (calibration = representative dataset, heldout for the ONNX check).
        options: the export options (int8 mode, I/O dtype, float ops, target, equalisation).
        plain_saved_model: onnx2tf SavedModel of the plain generator (used when equalisation is off).
        sample_data: onnx2tf's sample-data array (:func:`export.tflite_convert.sample_data_from_inputs`).
        fp32_size: bytes of the fp32 file as installed (:mod:`export.finish`), for the weight-scale choice.
        family: the generator's family (registry name): which inputs the validation set draws
            (:func:`drawn_validation_kinds`); None draws none.
    Returns:
        (path of the int8 .tflite in staging, seconds spent here, manifest detail dict).
    Raises:
        ExportError: ONNX export/conversion failure, or an equalised ONNX that differs from PyTorch.
    """
    from export.tflite_convert import run_onnx2tf

    t0 = time.perf_counter()
    detail: dict = {"equalisation": None, "concatenation_matching": None}
    float_ops = tuple(FLOAT_OPS) + tuple(o for o in options.extra_float_ops if o not in FLOAT_OPS)
    noise = sets.description.get("kind") == "noise"
    source = _representative_parts(sets)[0]

    params = int(count_params(generator))
    checked = validation_inputs(sets, drawn_validation_kinds(family))
    validation = checked.inputs
    choice_calibration, choice_correction = choice_inputs(sets)
    calibrated_on = _calibrated_on(choice_calibration)

    def ratio(content: bytes) -> float:
        return finished_size(content, staging / "int8_size_probe.tflite", options.keep_tensor_names) / fp32_size

    def over_size_gate(content: bytes) -> str | None:  # a float convolution must not cost the size gate
        if params <= SIZE_GATE_MIN_PARAMS or (r := ratio(content)) <= INT8_SIZE_RATIO:
            return None
        return f"{r:.4f} x the fp32 file > size gate {INT8_SIZE_RATIO}"

    def quantize(scales: str, saved_model: Path):
        return quantize_saved_model(saved_model, sets.calibration, mode=options.int8_mode, io_dtype=options.int8_io,
                                    per_channel=scales == "per-channel",
                                    float_ops=float_ops, target_db=options.int8_target_db,
                                    input_range=NOISE_RANGE if noise else IMAGE_RANGE, output_range=IMAGE_RANGE,
                                    correction_nchw=source, validation_nchw=validation, reject=over_size_gate,
                                    choice_calibration_nchw=choice_calibration,
                                    choice_correction_nchw=choice_correction)

    def judged(q) -> bytes:  # the file a choice measures: calibrated without the validation inputs when it can be
        return q.content if q.choice_content is None else q.choice_content

    def equalised_saved_model(match: bool, folder: Path) -> tuple[Path, dict]:
        equalised, report = equalise_for_int8(generator, sets.calibration, match_concatenations=match)
        folder.mkdir(parents=True, exist_ok=True)
        onnx_path = export_onnx(equalised, shape, folder / "generator_equalised.onnx")
        report["onnx_max_abs_diff"] = check_onnx(onnx_path, generator, sets.heldout)["max_abs_diff"]
        return run_onnx2tf(onnx_path, folder / "onnx2tf", folder / "cwd", sample_data)["saved_model"], report

    scales, choice = options.int8_weights, None
    first_scales = "per-channel" if scales == "auto" else scales
    saved_model = plain_saved_model
    if options.int8_equalise:
        work = staging / "int8_work"
        saved_model, report = equalised_saved_model(True, work)
        detail["equalisation"] = report

    @functools.cache
    def reference() -> np.ndarray:  # the PyTorch generator on the validation inputs, computed once
        with torch.no_grad():
            return generator(torch.from_numpy(validation)).numpy()

    @functools.cache
    def measured(content: bytes) -> dict:  # a file's validation figures, once per file whatever choice asks
        return validation_figures(content, validation, reference(), options.threads)

    input_range = NOISE_RANGE if noise else IMAGE_RANGE
    io16 = _io_16x8(options.int8_io)
    if options.int8_activations == "int16":   # asked for: no int8 file is made
        content = quantize_16x8(saved_model, sets.calibration, input_range=input_range, io_dtype=io16)
        detail["activations_choice"] = {"mode": "int16", "chosen": "int16x8", "why": "--int8-activations int16"}
        return _install_16x8(staging, content, detail, options, input_range, sets, io16, t0)
    result = quantize(first_scales, saved_model)

    if options.int8_equalise and report["concatenations"]:
        unmatched_model, unmatched_report = equalised_saved_model(False, work / "unmatched")
        unmatched = quantize(first_scales, unmatched_model)
        figures = {"matched": measured(judged(result)), "unmatched": measured(judged(unmatched))}
        kept = choose_concatenation_matching(figures)
        LOGGER.info("int8: concatenation ranges %s (validation %.2f / %.2f dB matched, %.2f / %.2f dB unmatched)",
                    "matched" if kept else "left as they are", figures["matched"]["validation_psnr_db"],
                    figures["matched"]["validation_worst_db"], figures["unmatched"]["validation_psnr_db"],
                    figures["unmatched"]["validation_worst_db"])
        detail["concatenation_matching"] = {"kept": kept, "validation": figures,
                                            **checked.to_json(), "files_calibrated_on": calibrated_on,
                                            "concatenations": report["concatenations"]}
        if not kept:
            saved_model, result, detail["equalisation"] = unmatched_model, unmatched, unmatched_report
    if scales == "auto":
        candidates = {"per-channel": {"size_ratio_to_fp32": ratio(result.content), "validation": None}}
        per_tensor = None
        if params > SIZE_GATE_MIN_PARAMS and candidates["per-channel"]["size_ratio_to_fp32"] > INT8_SIZE_RATIO:
            LOGGER.info("int8: the per-channel file is %.4f x fp32 (size gate %.2f x): making the per-tensor one",
                        candidates["per-channel"]["size_ratio_to_fp32"], INT8_SIZE_RATIO)
            per_tensor = quantize("per-tensor", saved_model)
            candidates["per-channel"]["validation"] = measured(judged(result))
            candidates["per-tensor"] = {"size_ratio_to_fp32": ratio(per_tensor.content),
                                        "validation": measured(judged(per_tensor))}
        scales, why = choose_weight_scales(candidates, params)
        if scales == "per-tensor":
            result = per_tensor
        LOGGER.info("int8: %s weight scales (%s)", scales, why)
        choice = {"chosen": scales, "why": why, "candidates": candidates,
                  **checked.to_json(), "files_calibrated_on": calibrated_on}
    if options.int8_activations == "auto" and options.int8_mode == "robust" and selection_missed(result.selection):
        int8_figures = measured(judged(result))
        trial, fig16, error = None, None, None
        if gate_margin(int8_figures) < 0:
            if io16 is None:
                error = f"--int8-io {options.int8_io}: a 16x8 file has int16 or float32 I/O"
            else:
                LOGGER.info("int8: the float selection missed its targets (validation %.2f / %.2f dB): making "
                            "the 16x8 file", int8_figures["validation_psnr_db"], int8_figures["validation_worst_db"])
                try:   # a converter without a 16x8 kernel for an op, or an input range it cannot fix
                    trial = quantize_16x8(saved_model, sets.calibration if choice_calibration is None
                                          else choice_calibration, input_range=input_range, io_dtype=io16)
                    fig16 = {**measured(trial), "size_ratio_to_fp32": ratio(trial)}
                except Exception as exc:  # noqa: BLE001 - recorded; the int8 file stays
                    error = f"{type(exc).__name__}: {first_line(exc, 300)}"
                    LOGGER.warning("int8: no 16x8 file (%s)", error)
        chosen, why = choose_activations(int8_figures, fig16, params)
        if error:
            why = f"{why} ({error})"
        LOGGER.info("int8: %s activations (%s)", "int16" if chosen == "int16x8" else "int8", why)
        detail["activations_choice"] = {"mode": "auto", "chosen": chosen, "why": why, "int8": int8_figures,
                                        "int16x8": fig16, **checked.to_json(), "files_calibrated_on": calibrated_on}
        if chosen == "int16x8":
            detail["float_selection_int8"] = result.selection
            content = trial if choice_calibration is None else \
                quantize_16x8(saved_model, sets.calibration, input_range=input_range, io_dtype=io16)
            return _install_16x8(staging, content, detail, options, input_range, sets, io16, t0)
    else:
        why = "--int8-activations int8" if options.int8_activations == "int8" else \
            "--int8-mode naive: no float selection, no 16x8 file" if options.int8_mode != "robust" else \
            "the float selection is off (--int8-target-db 0)" if not (result.selection or {}).get("trajectory") \
            else "the float selection met its targets on validation"
        detail["activations_choice"] = {"mode": options.int8_activations, "chosen": "int8", "why": why}
    path = staging / "int8.tflite"
    path.write_bytes(result.content)
    detail.update({
        "precision": "int8", "int8_mode": options.int8_mode, "int8_io": options.int8_io,
        "weight_quantization": f"{scales} int8 (convolutions in int8), int32 biases",
        "weight_scales_choice": choice,
        "float_denylist": list(float_ops) if options.int8_mode == "robust" else [],
        "fixed_ranges": {"input": list(NOISE_RANGE if noise else IMAGE_RANGE), "output": list(IMAGE_RANGE)}
        if options.int8_mode == "robust" else None,
        "float_nodes": result.float_nodes, "float_selection": result.selection,
        "bias_correction": result.bias_correction, "norm_input_ranges": result.norm_ranges,
        "calibration_count": int(len(sets.calibration)),
        "validation_inputs": {**checked.to_json(), "files_calibrated_on": calibrated_on},
        "calibration_scaling": "NHWC float32 in the generator's input range ([-1, 1] images, x / 127.5 - 1; "
                               "N(0,1) noise for dcgan), no mean/std"})
    return path, time.perf_counter() - t0, detail


def _install_16x8(staging: Path, content: bytes, detail: dict, options: ExportOptions, input_range: tuple,
                  sets, io16: str | None, t0: float) -> tuple[Path, float, dict]:
    """Write the 16x8 file to ``staging/int8.tflite`` and complete ``detail`` (manifest fields of
    :func:`build_int8_file`)."""
    path = staging / "int8.tflite"
    path.write_bytes(content)
    detail.update({
        "precision": "int8 weights, int16 activations (16x8)", "int8_mode": options.int8_mode, "int8_io": io16,
        "weight_quantization": "per-channel int8 (convolutions), int64 biases; activations int16, symmetric",
        "weight_scales_choice": None, "float_denylist": [],   # 16x8 weights are per-channel, no choice
        "fixed_ranges": {"input": list(input_range), "output": list(IMAGE_RANGE),
                         "how": "symmetric int16: the input scale is checked to be max |range| / 32767; the TANH "
                                "output has its fixed scale 1/32768"},
        "float_nodes": [], "float_selection": None, "bias_correction": None, "norm_input_ranges": None,
        "calibration_count": int(len(sets.calibration)),
        "converter": "TFLiteConverter, supported_ops = [EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]",
        "calibration_scaling": "NHWC float32 in the generator's input range ([-1, 1] images, x / 127.5 - 1; "
                               "N(0,1) noise for dcgan), no mean/std"})
    return path, time.perf_counter() - t0, detail
