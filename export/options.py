"""The settings of one export (:class:`ExportOptions`) and the ``--dtype`` values, validated on construction.

Every check raises :class:`compress.errors.InputError` naming the CLI flag of the field (``--dtype``,
``--calibration-count``...), the value given and what was expected, so ``python -m export`` can print it and
exit 2 whether the options came from argparse or from Python.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence, get_args

from compress.errors import InputError
from export.inputs import DEFAULT_CALIBRATION_COUNT, DEFAULT_HELDOUT_COUNT
from quantize import DEFAULT_TARGET_DB, IO_DTYPES, MODES, Int8Io, Int8Mode

#: A TFLite file type the export writes.
Dtype = Literal["fp32", "fp16", "int8"]
#: Every dtype, in export (and manifest) order.
DTYPES: tuple[Dtype, ...] = get_args(Dtype)
#: What ``--dtype`` accepts: a dtype, "all", or a comma list of those.
DTYPE_CHOICES = (*DTYPES, "all")
#: Weight scales of the int8 file's convolutions (``--int8-weights``); the first is the default.
INT8_WEIGHTS = ("auto", "per-channel", "per-tensor")
#: Activation precision of the int8 file (``--int8-activations``): see :class:`ExportOptions`.
INT8_ACTIVATIONS = ("auto", "int8", "int16")
#: Range of ``--input-size`` (pixels): below 16 the downsamplings of the image generators leave almost nothing;
#: 4096 is a sanity bound (one 64-channel float32 activation at 4096 x 4096 is 4 GiB).
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 16, 4096


def parse_dtypes(spec: str | Sequence[str]) -> tuple[Dtype, ...]:
    """``"fp32"`` / ``"fp16"`` / ``"int8"`` / ``"all"``, a comma list of them (``"fp32,int8"``) or a sequence of
    them -> the dtypes in :data:`DTYPES` order, each once.

    Raises:
        InputError: an item that is none of :data:`DTYPE_CHOICES` (the message names ``--dtype``, the value
            and the valid choices).
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    wanted: set[str] = set()
    for item in (str(i).strip() for i in items):
        if item == "all":
            wanted.update(DTYPES)
        elif item in DTYPES:
            wanted.add(item)
        else:
            value = spec if isinstance(spec, str) else ",".join(map(str, spec))
            raise InputError(f"--dtype {value!r}: {item!r} is not a dtype; expected one of "
                             f"{', '.join(DTYPE_CHOICES)} or a comma list of them (e.g. fp32,int8)")
    return tuple(d for d in DTYPES if d in wanted)


@dataclass(frozen=True)
class ExportOptions:
    """Settings of :func:`export.export_run` (the flags of ``python -m export``; defaults are the CLI's).

    Attributes:
        dtypes: TFLite files to write, in :data:`DTYPES` order (``--dtype``). A string ("all", "int8",
            "fp32,int8") or any sequence of dtypes is accepted and normalised by :func:`parse_dtypes`.
        out_dir: output folder (``--out``; None: ``RUN_DIR/export``).
        accept_gate_failure: install the files even when a quality gate is missed; the manifest records it.
        force: re-export even when the manifest says nothing changed.
        calibration_dir: folder of source-domain images for the int8 representative dataset, overriding the
            run's dataset (``--calibration-dir``; int8 only; must exist).
        calibration_count: representative inputs for int8 (count, >= 1; default 100).
        heldout_count: held-out inputs of the parity gates (count, >= 1; default 8).
        int8_io: input/output tensor type of the int8 model, one of :data:`quantize.IO_DTYPES`.
        int8_weights: "per-channel" (one scale per output channel), "per-tensor" (one scale per weight tensor:
            12 bytes of quantization parameters per convolution instead of per channel, and what some accelerators
            require; the equalisation makes the channels' ranges comparable, which is what per-tensor scales
            need, Nagel et al. 2019) or "auto" (default: per-channel; for a generator above 0.1 M parameters
            per-tensor instead when the per-channel file misses the size gate and the per-tensor one meets it and
            the int8 gates on validation inputs, :func:`export.int8_file.choose_weight_scales`). One of
            :data:`INT8_WEIGHTS`.
        int8_activations: "int8" (int8 activations only), "int16" (a 16x8 file: int8 weights, int16 activations,
            :mod:`quantize.int16x8`; runs on the CPU kernels only, no GPU delegate) or "auto" (default: int8, and the
            16x8 file instead only when the int8 file, float selection included, misses the int8 gates on the
            validation inputs and the 16x8 file meets them within the size gate,
            :func:`export.int8_file.choose_activations`). One of :data:`INT8_ACTIVATIONS`.
        int8_mode: "robust" (every convolution int8; InstanceNorm, residual and LEAKY_RELU element-wise ops in
            float; bias correction) or "naive" (the converter's full-integer recipe), see :mod:`quantize.int8`.
        int8_target_db: robust int8, last resort: validation PSNR (dB, in [0, 100]) below which the convolutions
            feeding an InstanceNorm are kept in float, the one that measurably helps most first, until the pooled PSNR
            reaches it and the worst input reaches it minus 3 dB (:mod:`quantize.sensitivity`; the file is then
            labelled mixed); 0 turns that off.
        int8_equalise: make int8 from the equalised generator (:mod:`quantize.equalize`: BatchNorm folded,
            InstanceNorm inputs and cross-layer ranges equalised; ``--no-equalise`` turns it off).
        extra_float_ops: upper-case TFLite builtin op names kept in float in addition to
            :data:`quantize.FLOAT_OPS` (robust int8 only), e.g. ``("TRANSPOSE_CONV", "STRIDED_SLICE")``.
        fid_count: when > 0 (count, >= 2) and int8 is exported, also the FID change of int8 on up to this many
            test inputs (DCGAN: samples) under ``python -m compress.evaluate``'s protocol; 0 = off.
        threads: LiteRT threads for the parity runs (count).
        keep_tensor_names: keep every tensor name in the .tflite files (``--keep-tensor-names``); by default
            only the input/output names stay and the manifest keeps the rest (:mod:`export.compact`).
        input_size: side S (pixels) of the exported S x S input (``--input-size``), for generators whose input
            is an image (fully convolutional: pix2pix, CycleGAN); the parity gates and the int8 calibration
            then use the held-out / calibration images resized to S x S (:mod:`export.inputs`). None: the
            training size of the run. A generator with a fixed size (DCGAN: z in, 32 x 32 out) refuses any
            other size (:func:`export.inputs.export_input_shape`).

    Raises:
        InputError: on construction, for any value outside the ranges above (message names the CLI flag).
    """

    dtypes: tuple[Dtype, ...] = DTYPES
    out_dir: Path | None = None
    accept_gate_failure: bool = False
    force: bool = False
    calibration_dir: Path | None = None
    calibration_count: int = DEFAULT_CALIBRATION_COUNT
    heldout_count: int = DEFAULT_HELDOUT_COUNT
    int8_io: Int8Io = "int8"
    int8_weights: str = "auto"
    int8_activations: str = "auto"
    int8_mode: Int8Mode = "robust"
    int8_target_db: float = DEFAULT_TARGET_DB
    int8_equalise: bool = True
    extra_float_ops: tuple[str, ...] = ()
    fid_count: int = 0
    threads: int = 2
    input_size: int | None = None
    keep_tensor_names: bool = False

    def __post_init__(self) -> None:
        # frozen: normalised values are set through object.__setattr__
        object.__setattr__(self, "dtypes", parse_dtypes(self.dtypes))
        object.__setattr__(self, "extra_float_ops", tuple(self.extra_float_ops))
        if self.out_dir is not None:
            object.__setattr__(self, "out_dir", Path(self.out_dir))
        if self.calibration_dir is not None:
            object.__setattr__(self, "calibration_dir", Path(self.calibration_dir))
        if self.int8_io not in IO_DTYPES:
            raise InputError(f"--int8-io {self.int8_io!r}; expected one of {', '.join(IO_DTYPES)}")
        if self.int8_weights not in INT8_WEIGHTS:
            raise InputError(f"--int8-weights {self.int8_weights!r}; expected one of {', '.join(INT8_WEIGHTS)}")
        if self.int8_activations not in INT8_ACTIVATIONS:
            raise InputError(f"--int8-activations {self.int8_activations!r}; expected one of "
                             f"{', '.join(INT8_ACTIVATIONS)}")
        if self.int8_activations == "int16" and self.int8_io == "uint8":
            raise InputError("--int8-activations int16 with --int8-io uint8: a 16x8 file has int16 or float32 "
                             "input/output tensors; use --int8-io int8 (int16 I/O) or float32")
        if self.int8_mode not in MODES:
            raise InputError(f"--int8-mode {self.int8_mode!r}; expected one of {', '.join(MODES)}")
        for flag, value, least in (("--calibration-count", self.calibration_count, 1),
                                   ("--heldout-count", self.heldout_count, 1), ("--threads", self.threads, 1),
                                   ("--fid", self.fid_count, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InputError(f"{flag} {value!r}; expected a whole number >= {least}")
        if self.extra_float_ops:
            from quantize.litert import flatbuffer_schema

            builtins = {k for k in vars(flatbuffer_schema().BuiltinOperator) if not k.startswith("_")}
            for op in self.extra_float_ops:
                if op not in builtins:
                    raise InputError(f"--extra-float-ops: {op!r} is not a TFLite builtin op name; expected "
                                     "upper-case names of the TFLite schema such as TRANSPOSE_CONV,STRIDED_SLICE")
        if not (math.isfinite(self.int8_target_db) and 0.0 <= self.int8_target_db <= 100.0):
            raise InputError(f"--int8-target-db {self.int8_target_db}; expected dB in [0, 100] (0 turns the float "
                             f"selection of robust int8 off; default {DEFAULT_TARGET_DB:g})")
        if self.extra_float_ops and self.int8_mode != "robust":
            raise InputError("--extra-float-ops applies to --int8-mode robust only (naive quantizes every op)")
        if self.fid_count != 0 and self.fid_count < 2:
            raise InputError(f"--fid {self.fid_count}; expected 0 (off) or a number of images >= 2")
        if self.input_size is not None and not (isinstance(self.input_size, int) and
                                                MIN_INPUT_SIZE <= self.input_size <= MAX_INPUT_SIZE):
            raise InputError(f"--input-size {self.input_size!r}; expected a side in pixels from {MIN_INPUT_SIZE} "
                             f"to {MAX_INPUT_SIZE} (e.g. 256, the phone's input size of paper Table 3)")
        if self.out_dir is not None and self.out_dir.exists() and not self.out_dir.is_dir():
            raise InputError(f"--out {self.out_dir}: a file; expected a folder for the exported files (created "
                             "when missing)")
        if self.calibration_dir is not None and not self.calibration_dir.is_dir():
            raise InputError(f"--calibration-dir {self.calibration_dir} does not exist or is not a folder; "
                             "expected a folder of source-domain images")
