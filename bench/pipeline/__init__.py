"""The main job as one pipeline: data -> compress -> evaluate -> export/quantize -> bench -> release.

``python -m bench.pipeline [STAGE ...]`` (``make pipeline``; usage in :mod:`bench.pipeline.cli`). Modules, each
importing only those below it:

* :mod:`~bench.pipeline.cli` - the command line;
* :mod:`~bench.pipeline.stages` - :class:`PipelineConfig` and :class:`Pipeline`, the stage runner;
* :mod:`~bench.pipeline.phone` - is a phone attached (:func:`detect_phone`);
* :mod:`~bench.pipeline.release` - the release folder (``python -m bench.pipeline.release RUN``);
* :mod:`~bench.pipeline.compare` - original beside compressed: the headline, the latency tables, the plot;
* :mod:`~bench.pipeline.page` - the release as one self-contained HTML page;
* :mod:`~bench.pipeline.record` - ``RUN/pipeline.json``, :data:`STAGES` and the skip checks.
"""
from bench.pipeline.phone import detect_phone
from bench.pipeline.record import RECORD, STAGES
from bench.pipeline.stages import Pipeline, PipelineConfig, resolve_preset

__all__ = ["Pipeline", "PipelineConfig", "RECORD", "STAGES", "detect_phone", "resolve_preset"]
