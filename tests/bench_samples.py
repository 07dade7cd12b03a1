"""Sample benchmark_model outputs (older and newer forms) for the parser tests.

Written after the format that TFLite's benchmark_model prints (tensorflow/lite/tools/benchmark,
benchmark_tflite_model.cc); numbers are illustrative of a 256×256 generator on a phone GPU.
"""

NEWER_FULL = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num runs: [50]
INFO: Min warmup runs: [5]
INFO: Graph: [/data/local/tmp/coronetgan-bench-x/m01_pruned_fp32.tflite]
INFO: #threads used for CPU inference: [4]
INFO: Use gpu: [1]
INFO: GPU backend: [cl]
INFO: Allow lower precision in gpu: [0]
INFO: Report the peak memory footprint: [1]
INFO: Loaded model /data/local/tmp/coronetgan-bench-x/m01_pruned_fp32.tflite
INFO: Initialized TensorFlow Lite runtime.
INFO: Created TensorFlow Lite delegate for GPU.
INFO: GPU delegate created.
INFO: Replacing 58 out of 58 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 1 partitions for the whole graph.
INFO: Initialized OpenCL-based API.
INFO: Created 1 GPU delegate kernels.
INFO: Explicitly applied GPU delegate, and the model graph will be completely executed by the delegate.
INFO: The input model file size (MB): 2.13421
INFO: Initialized session in 512.374ms.
INFO: Running benchmark for at least 5 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=37 first=28345 curr=9123 min=8950 max=28345 avg=9800.5 std=3120 p5=8960 median=9050 p95=10200

INFO: Running benchmark for at least 50 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=9101 curr=9087 min=8932 max=9544 avg=9120.3 std=110 p5=8950 median=9090 p95=9400

INFO: Inference timings in us: Init: 512374, First inference: 28345, Warmup (avg): 9800.5, Inference (avg): 9120.3
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=120.5 overall=135.2
INFO: Overall peak memory footprint (MB) via periodic monitoring: 140.3
INFO: Memory status at the end of exeution:
INFO: - VmRSS              : 130 MB
INFO: + RssAnnon           : 90 MB
"""

NEWER_PARTIAL = """\
INFO: STARTING!
INFO: Graph: [/data/local/tmp/x/m00_unpruned_fp16.tflite]
INFO: Use gpu: [1]
INFO: Loaded model /data/local/tmp/x/m00_unpruned_fp16.tflite
INFO: Initialized TensorFlow Lite runtime.
INFO: Created TensorFlow Lite delegate for GPU.
INFO: GPU delegate created.
ERROR: Following operations are not supported by GPU delegate:
MIRROR_PAD: Operation is not supported.
SQUARED_DIFFERENCE: Operation is not supported.
40 operations will run on the GPU, and the remaining 18 operations will run on the CPU.
INFO: Replacing 40 out of 58 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 3 partitions for the whole graph.
INFO: Initialized OpenCL-based API.
INFO: Created 3 GPU delegate kernels.
INFO: Explicitly applied GPU delegate, and the model graph will be partially executed by the delegate w/ 3 delegate kernels.
INFO: The input model file size (MB): 1.07
INFO: Initialized session in 830.1ms.
INFO: Running benchmark for at least 50 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=25101 curr=24987 min=24032 max=27544 avg=25120.3 std=610 p5=24100 median=25010 p95=26400

INFO: Inference timings in us: Init: 830100, First inference: 31000, Warmup (avg): 26000, Inference (avg): 25120.3
INFO: Memory footprint delta from the start of the tool (MB): init=80.5 overall=95.2
"""

OLDER = """\
STARTING!
Min num runs: [50]
Min runs duration (seconds): [1]
Max runs duration (seconds): [150]
Inter-run delay (seconds): [-1]
Num threads: [4]
Benchmark name: []
Output prefix: []
Min warmup runs: [1]
Min warmup runs duration (seconds): [0.5]
Graph: [/data/local/tmp/model_int8.tflite]
Input layers: []
Input shapes: []
Use nnapi : [0]
Use legacy nnapi : [0]
Use gpu : [1]
Allow fp16 : [0]
Require full delegation : [0]
Enable op profiling: [0]
Max profiling buffer entries: [1024]
Loaded model /data/local/tmp/model_int8.tflite
resolved reporter
INFO: Initialized TensorFlow Lite runtime.
INFO: Created TensorFlow Lite delegate for GPU.
INFO: Replacing 58 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 1 partitions.
Applied GPU delegate.
The input model file size (MB): 0.61
Initialized session in 402.2ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=51 first=14210 curr=9871 min=9560 max=14210 avg=9912.1 std=640

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=102 first=9801 curr=9755 min=9502 max=10990 avg=9780.42 std=201

Inference timings in us: Init: 402200, First inference: 14210, Warmup (avg): 9912.1, Inference (avg): 9780.42
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Peak memory footprint (MB): init=64.3 overall=71.9
"""

LOAD_FAIL = """\
INFO: STARTING!
INFO: Graph: [/data/local/tmp/x/broken.tflite]
ERROR: The model is not a valid Flatbuffer buffer
ERROR: Failed to mmap model /data/local/tmp/x/broken.tflite
"""

OP_PROFILING_TAIL = """\
INFO: count=50 first=9101 curr=9087 min=8932 max=9544 avg=9120.3 std=110 p5=8950 median=9090 p95=9400

INFO: Inference timings in us: Init: 512374, First inference: 28345, Warmup (avg): 9800.5, Inference (avg): 9120.3
Timings (microseconds): count=50 first=8000 curr=8100 min=7900 max=8400 avg=8050 std=90
Memory (bytes): count=0
"""
