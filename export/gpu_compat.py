"""Rewrite a .tflite so the TFLite GPU delegate accepts it: unfuse activations from TRANSPOSE_CONV.

The converter (TF 2.19 via onnx2tf) fuses a ReLU that follows a transposed convolution into the op
(``TransposeConvOptions.fused_activation_function``), which makes it TRANSPOSE_CONV **version 4**
(``tensorflow/lite/tools/versioning/op_version.cc``). The GPU delegate accepts TRANSPOSE_CONV up to
version 3 (``CheckMaxSupportedOpVersion`` in ``delegates/gpu/common/model_builder.cc``), so such a model
falls back to the CPU for those ops. DCGAN's ConvTranspose -> BatchNorm -> ReLU blocks hit this.

The rewrite sets the fused activation to NONE, gives the op a new output tensor (same type, shape and
quantization as the original output) and adds the activation as its own RELU / RELU6 / RELU_N1_TO_1 / TANH
op writing the original output. For int8 models the new tensor keeps the output's quantization, whose
range starts at 0 for a fused ReLU: the stand-alone ReLU then computes exactly what the fused op did.
The export's parity gates run on the rewritten file, so any error would show there.
"""
from __future__ import annotations

import copy
from pathlib import Path

from compress.io import atomic_write_bytes


def unfuse_transpose_conv_activations(path: str | Path) -> int:
    """Rewrite ``path`` in place (atomically); returns how many TRANSPOSE_CONV ops were unfused (0: file untouched)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.python.util import (_convert_model_from_bytearray_to_object,
                                             _convert_model_from_object_to_bytearray)

    builtin = schema.BuiltinOperator
    act_ops = {schema.ActivationFunctionType.RELU: builtin.RELU,
               schema.ActivationFunctionType.RELU6: builtin.RELU6,
               schema.ActivationFunctionType.RELU_N1_TO_1: builtin.RELU_N1_TO_1,
               schema.ActivationFunctionType.TANH: builtin.TANH}
    model = _convert_model_from_bytearray_to_object(bytearray(Path(path).read_bytes()))

    def code_of(op_code) -> int:
        return max(op_code.builtinCode, op_code.deprecatedBuiltinCode)

    def opcode_index(code: int) -> int:
        for i, oc in enumerate(model.operatorCodes):
            if code_of(oc) == code:
                return i
        oc = schema.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
        model.operatorCodes.append(oc)
        return len(model.operatorCodes) - 1

    rewritten = 0
    for subgraph in model.subgraphs:
        new_ops = []
        for op in subgraph.operators:
            new_ops.append(op)
            if code_of(model.operatorCodes[op.opcodeIndex]) != builtin.TRANSPOSE_CONV:
                continue
            act = op.builtinOptions.fusedActivationFunction
            if act == schema.ActivationFunctionType.NONE or act not in act_ops:
                continue
            out_index = op.outputs[0]
            pre = copy.deepcopy(subgraph.tensors[out_index])
            pre.name = (pre.name or b"") + b"_pre_activation"
            subgraph.tensors.append(pre)
            pre_index = len(subgraph.tensors) - 1
            op.outputs[0] = pre_index
            op.builtinOptions.fusedActivationFunction = schema.ActivationFunctionType.NONE
            act_op = schema.OperatorT()
            act_op.opcodeIndex = opcode_index(act_ops[act])
            act_op.inputs, act_op.outputs = [pre_index], [out_index]
            new_ops.append(act_op)
            rewritten += 1
        subgraph.operators = new_ops
    if rewritten:
        for oc in model.operatorCodes:
            if code_of(oc) == builtin.TRANSPOSE_CONV and oc.version > 3:
                oc.version = 3
        atomic_write_bytes(path, bytes(_convert_model_from_object_to_bytearray(model)))
    return rewritten
