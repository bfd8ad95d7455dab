"""The public surface: ``dir(graphc)`` is an explicit list, the top level is lazy, and a saved
step loads and runs without the compiler or the TF1 API.

The names below are TF1's (``import graphc as tf``) and graphc's own (compile, load,
CompiledStep, dump_ir, check_gradients, diagnostics, distributed, errors). A name added to or
dropped from the top level changes this list on purpose, never by a stray import.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphc

PUBLIC = """
    AUTO_REUSE Assert CompiledStep DType Dimension Graph GraphKeys HistogramProto
    InteractiveSession Operation Print Session Summary Tensor TensorArray TensorShape Variable
    VariableScope abs add add_n add_to_collection app argmax argmin as_dtype assert_equal
    assert_less assert_non_negative assert_positive assign assign_add assign_sub bool broadcast_to
    case cast check_gradients check_numerics clip_by_average_norm clip_by_global_norm clip_by_norm
    clip_by_value compat compile concat cond constant constant_initializer contrib
    control_dependencies count_nonzero cumsum data debugging diag diag_part diagnostics
    disable_eager_execution disable_v2_behavior distributed div div_no_nan divide dump_ir einsum
    equal errors executing_eagerly exp expand_dims eye fill flags float32 float64 floor floordiv
    floormod foldl foldr gather gather_nd get_collection get_default_graph get_default_session
    get_variable get_variable_scope global_norm global_variables global_variables_initializer
    glorot_normal_initializer glorot_uniform_initializer gradients greater greater_equal group
    hessian_vector_product identity image initialize_all_variables initializers int16 int32 int64
    int8 is_finite is_inf is_nan layers less less_equal linalg load local_variables_initializer log
    log1p logging logical_and logical_not logical_or losses map_fn math matmul matrix_diag
    matrix_diag_part maximum metrics minimum mod multiply name_scope nest neg negative newaxis nn no_op
    norm not_equal numpy_function one_hot ones ones_initializer ones_like orthogonal_initializer
    pad placeholder placeholder_with_default pow print py_func random_normal
    random_normal_initializer random_uniform random_uniform_initializer range rank realdiv
    reciprocal reduce_all reduce_any reduce_logsumexp reduce_max reduce_mean reduce_min reduce_prod
    reduce_std reduce_sum reduce_variance reset_default_graph reshape reverse reverse_v2 rsqrt scan
    scatter_nd segment_sum sequence_mask set_random_seed shape sigmoid sign slice split sqrt square
    squared_difference squeeze stack stop_gradient subtract summary tanh tensordot tile to_double
    to_float to_int32 to_int64 trace train trainable_variables transpose truediv truncated_normal
    truncated_normal_initializer uint8 unsorted_segment_sum unstack variable_scope
    variables_initializer variance_scaling_initializer where while_loop zeros zeros_initializer
    zeros_like
    ConfigProto GPUOptions RunMetadata RunOptions add_check_numerics_ops arg_max arg_min argsort
    ceil device hessians local_variables model_variables rint round sort verify_tensor_all_finite
    UnconnectedGradients convert_to_tensor lin_space linspace size
    confusion_matrix random_crop random_shuffle cos sin
""".split()

ROOT = Path(graphc.__file__).resolve().parent


def test_dir_lists_exactly_the_public_names():
    assert dir(graphc) == sorted(PUBLIC)
    assert sorted(graphc.__all__) == sorted(PUBLIC)


def test_every_public_name_resolves():
    for name in PUBLIC:
        getattr(graphc, name)


def test_no_function_is_shadowed_by_a_submodule_of_its_name():
    """Importing ``graphc.x`` sets the attribute ``graphc.x`` to the module: a public ``x``
    that is not that module would turn into it once anything imports the module."""
    modules = {p.stem for p in ROOT.glob("*.py")} | {p.name for p in ROOT.iterdir()
                                                    if (p / "__init__.py").exists()}
    for name, (module, attr) in graphc._WHERE.items():
        if name in modules:
            assert attr is None and module == "." + name, (name, module, attr)


def test_implementation_details_are_not_public():
    for name in ("np", "builtins", "Node", "apply", "D", "compiler", "math_ops", "session"):
        assert name not in dir(graphc)


SCRIPT = """
import sys, time
t0 = time.perf_counter()
from graphc.runtime import load
step = load(sys.argv[1])
import numpy as np
out = step(x=np.ones((4, 3), np.float32))
took = time.perf_counter() - t0
heavy = sorted(m for m in sys.modules if m.split(".")[0] == "networkx" or m.startswith(
    ("graphc.ir", "graphc.codegen", "graphc.framework", "graphc.client.session", "graphc.client.compile",
     "graphc.ops.math_ops", "graphc.ops.nn_impl", "graphc.train")))
print(repr(heavy), float(np.asarray(out).sum()), took)
"""


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_a_saved_step_runs_without_the_compiler_or_the_api(backend, tmp_path):
    x = graphc.placeholder(graphc.float32, [4, 3], name="x")
    w = graphc.Variable(np.full((3, 2), 0.5, np.float32), name="w")
    loss = graphc.reduce_sum(graphc.tanh(graphc.matmul(x, w)))
    step = graphc.compile(loss, backend=backend)
    want = float(step(x=np.ones((4, 3), np.float32)))
    step.save(tmp_path / "s.gcx")
    env = dict(os.environ, PYTHONPATH="")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "s.gcx")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    heavy, value, _ = proc.stdout.split()
    assert heavy == "[]"
    assert float(value) == pytest.approx(want, rel=1e-6)


def test_build_time_values_need_no_import_side_effect():
    """``x[c]`` with a constant tensor index is a static slice in a fresh process that
    imported nothing but ``graphc`` (the evaluator is the graph layer's, not installed by an
    API module on import)."""
    script = ("import graphc as gc\n"
              "x = gc.placeholder(gc.float32, [4, 3])\n"
              "y = x[gc.constant(2) - 1]\n"
              "print(y.op_name, list(y.shape))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONPATH=""))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["strided_slice", "[3]"]
