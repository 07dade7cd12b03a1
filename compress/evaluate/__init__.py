"""Evaluation of compressed generators: ``python -m compress.evaluate RUN_DIR`` (FID, KID, params, MACs, a grid
of input/output pairs, an "Evaluation" section in the run's report), ``python -m compress.evaluate fid A B``
(FID/KID between two folders of images) and ``python -m compress.evaluate.compare`` (a results table over
several run folders). See :mod:`compress.evaluate.core` for the protocol and docs/evaluate.md for results.

Modules: :mod:`~compress.evaluate.inception` (the FID Inception and its preprocessing),
:mod:`~compress.evaluate.features` (pool3 features of tensors, arrays, folders, files),
:mod:`~compress.evaluate.metrics` (FID and KID maths), :mod:`~compress.evaluate.reference` (statistics of image
sets, cached reference statistics), :mod:`~compress.evaluate.cache` (the on-disk cache),
:mod:`~compress.evaluate.distance` (FID/KID between two image sets), :mod:`~compress.evaluate.folders` (the
``fid`` command), :mod:`~compress.evaluate.core` (a run's evaluation), :mod:`~compress.evaluate.compare`.
"""
from compress.evaluate.core import (EVALUATION_FILE, GRID_FILE, EvalData, EvalSettings, check_run_dir, evaluate_run,
                                    evaluation_data, evaluation_markdown, generate, write_report_section)

__all__ = ["EVALUATION_FILE", "GRID_FILE", "EvalData", "EvalSettings", "check_run_dir", "evaluate_run",
           "evaluation_data", "evaluation_markdown", "generate", "write_report_section"]
