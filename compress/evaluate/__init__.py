"""Evaluation of compressed generators: ``python -m compress.evaluate RUN_DIR`` (FID, KID, params, MACs, a grid
of input/output pairs, an "Evaluation" section in the run's report) and ``python -m compress.evaluate.compare``
(a results table over several run folders). See :mod:`compress.evaluate.core` for the protocol and
docs/evaluate.md for results.
"""
from compress.evaluate.core import (EVALUATION_FILE, GRID_FILE, EvalData, EvalSettings, check_run_dir, evaluate_run,
                                    evaluation_data, evaluation_markdown, generate, write_report_section)

__all__ = ["EVALUATION_FILE", "GRID_FILE", "EvalData", "EvalSettings", "check_run_dir", "evaluate_run",
           "evaluation_data", "evaluation_markdown", "generate", "write_report_section"]
