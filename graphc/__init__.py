"""graphc: a static-graph compiler for training steps, with TensorFlow 1.x's API.

``import graphc as gc`` (or ``as tf``) gives the public API; ``graphc.ir``, ``graphc.codegen``
and ``graphc.runtime`` are the compiler's layers. The top level is a table, not imports
(PEP 562): a name's module is imported the first time the name is used, so loading a saved
step (``from graphc.runtime import load``, ``graphc run``) never imports the compiler, and
``dir(graphc)`` lists exactly the public names below.
"""
import importlib

from . import errors  # noqa: F401  (a leaf: always available)

__version__ = "0.1.0"

# module -> the public names it gives: TF1's names, and graphc's own (compile, load,
# CompiledStep, dump_ir, check_gradients, diagnostics...). ``name=attribute`` where the two
# differ; ``name=.`` is the module itself.
_API = {
    ".client.compile": "compile CompiledStep",
    ".client.printing": "dump_ir",
    ".client.config": "ConfigProto GPUOptions RunMetadata RunOptions",
    ".client.session": "InteractiveSession Session",
    ".compat": "compat=. disable_eager_execution disable_v2_behavior executing_eagerly",
    ".compat.shims": "app flags logging",
    ".contrib": "contrib=.",
    ".data": "data=.",
    ".distributed": "distributed=.",
    ".errors": "errors=.",
    ".framework.gradients": "gradients hessians UnconnectedGradients",
    ".framework.graph": (
        "add_to_collection assign assign_add assign_sub constant control_dependencies device "
        "get_collection get_default_graph global_variables global_variables_initializer Graph "
        "GraphKeys group initialize_all_variables local_variables local_variables_initializer "
        "model_variables name_scope no_op Operation placeholder placeholder_with_default "
        "reset_default_graph set_random_seed Tensor trainable_variables Variable "
        "variables_initializer"
    ),
    ".framework.nest": "nest=.",
    ".framework.variable_scope": (
        "AUTO_REUSE get_variable get_variable_scope variable_scope VariableScope"
    ),
    ".layers": "layers=.",
    ".linalg": "linalg=.",
    ".losses": "losses=.",
    ".math": "math=.",
    ".metrics": "metrics=.",
    ".nn": "nn=.",
    ".ops.array_ops": "cumsum pad reverse reverse_v2 sequence_mask split tile",
    ".ops.clip_ops": (
        "clip_by_average_norm clip_by_global_norm clip_by_norm clip_by_value global_norm"
    ),
    ".ops.confusion_matrix": "confusion_matrix",
    ".ops.control_flow_ops": "case cond while_loop",
    ".ops.debug_ops": (
        "add_check_numerics_ops Assert assert_equal assert_less assert_non_negative "
        "assert_positive check_numerics numpy_function Print print=print_ py_func "
        "verify_tensor_all_finite"
    ),
    ".ops.functional_ops": "foldl foldr map_fn scan",
    ".ops.image_ops": "image=.",
    ".ops.indexing_ops": "gather_nd scatter_nd segment_sum unsorted_segment_sum",
    ".ops.init_ops": (
        "constant_initializer glorot_normal_initializer glorot_uniform_initializer "
        "initializers=. ones_initializer orthogonal_initializer random_normal_initializer "
        "random_uniform_initializer truncated_normal_initializer variance_scaling_initializer "
        "zeros_initializer"
    ),
    ".ops.linalg_ops": "diag diag_part eye matrix_diag matrix_diag_part norm tensordot trace",
    ".ops.math_ops": (
        "abs add add_n arg_max arg_min argmax argmin broadcast_to cast ceil concat "
        "convert_to_tensor div div_no_nan divide equal exp expand_dims fill floor floordiv "
        "floormod gather greater greater_equal identity is_finite is_inf is_nan less "
        "less_equal lin_space linspace log log1p logical_and logical_not logical_or matmul "
        "maximum minimum mod multiply neg negative not_equal one_hot ones ones_like pow "
        "random_normal random_uniform range rank realdiv "
        "reciprocal reshape rint round rsqrt shape sigmoid sign sin cos size slice sqrt square "
        "squared_difference squeeze stack stop_gradient subtract tanh to_double to_float "
        "to_int32 to_int64 transpose truediv truncated_normal unstack where zeros zeros_like"
    ),
    ".ops.random_extra": "random_crop random_shuffle",
    ".ops.reduction_ops": (
        "count_nonzero reduce_all reduce_any reduce_logsumexp reduce_max reduce_mean "
        "reduce_min reduce_prod reduce_std reduce_sum reduce_variance"
    ),
    ".ops.sort_ops": "argsort sort",
    ".ops.special_math_ops": "einsum",
    ".ops.tensor_array_ops": "TensorArray",
    ".runtime": "load",
    ".summary": "summary=.",
    ".summary.proto": "HistogramProto Summary",
    ".tools.diagnostics": "diagnostics=.",
    ".tools.gradcheck": "check_gradients",
    ".train": "train=.",
    ".ir.autodiff": "hessian_vector_product",
    ".ir.dtypes": "as_dtype bool=bool_ DType float32 float64 int16 int32 int64 int8 uint8",
    ".ir.graph": "get_default_session",
    ".ir.shapes": "Dimension TensorShape",
}
_WHERE = {}
for _module, _names in _API.items():
    for _entry in _names.split():
        _name, _, _attr = _entry.partition("=")
        _WHERE[_name] = (_module, None if _attr == "." else _attr or _name)
_SPECIAL = ("debugging", "newaxis")  # built on first use, not imported
__all__ = sorted(list(_WHERE) + list(_SPECIAL))


# -- TF1 names graphc does not have (PEP 562): a clear AttributeError saying what to do ------
_MISSING = {
    "keras": "graphc implements TF1's graph API, not Keras: use gc.layers (dense, conv2d, "
             "dropout, batch_normalization...), gc.losses and the gc.train optimizers",
    "estimator": "write the training loop with gc.Session and a gc.train optimizer "
                 "(minimize), feeding batches from gc.data.batches",
    "saved_model": "save variables with gc.train.Saver, or a whole compiled step with "
                   "gc.compile(...).save(path) (loads without the compiler: gc.load)",
    "lite": "graphc has no TFLite converter: gc.compile(...).save(path) saves a compiled step",
    "gfile": "use Python's open() and os",
    "SparseTensor": "graphc has dense tensors only: gc.gather / gc.nn.embedding_lookup cover "
                    "sparse lookups",
    "sparse": "graphc has dense tensors only: gc.gather / gc.nn.embedding_lookup cover sparse "
              "lookups",
    "data.TFRecordDataset": "read the records with NumPy and build a gc.data.Dataset "
                            "from_tensor_slices, or feed batches through feed_dict",
    "data.TextLineDataset": "parse the lines into numbers with Python or NumPy and build a "
                            "gc.data.Dataset from_tensor_slices of the arrays",
}
# TF1's queue-based input pipeline: tf.data (or feed_dict) does the same in graphc
_QUEUES = ("graphc has no input queues or queue runners: build a gc.data.Dataset "
           "(from_tensor_slices((x, y)).shuffle(n).batch(b)) and its make_one_shot_iterator(), "
           "or feed NumPy batches (gc.data.batches) through feed_dict")
_RECORDS = ("graphc reads no TFRecords: keep the data as NumPy arrays (np.savez / np.load) "
            "and build a gc.data.Dataset from_tensor_slices of them")
_MISSING.update({f"train.{name}": _QUEUES for name in (
    "Coordinator", "start_queue_runners", "QueueRunner", "batch", "shuffle_batch",
    "string_input_producer", "slice_input_producer", "input_producer")})
_MISSING.update({name: _QUEUES for name in ("FIFOQueue", "RandomShuffleQueue",
                                             "TFRecordReader", "TextLineReader")})
# ops whose result's shape depends on the data: what keeps the shape static instead
_DATA_SHAPED = "its result's shape depends on the data, and graphc compiles steps whose shapes "\
    "are known when they are specialized; "
_MISSING.update({
    "boolean_mask": _DATA_SHAPED + "keep the shape: gc.where(mask, x, gc.zeros_like(x)) (or x * "
                    "gc.cast(mask, x.dtype)), and divide sums by gc.reduce_sum(gc.cast(mask, "
                    "x.dtype)) for a mean over the selected entries",
    "unique": _DATA_SHAPED + "compare all pairs, gc.equal(gc.expand_dims(x, 1), "
              "gc.expand_dims(x, 0)), which has a static shape, or find the unique values with "
              "np.unique outside the step",
    "dynamic_partition": _DATA_SHAPED + "mask each partition, gc.where(gc.equal(partitions, "
                         "i), x, gc.zeros_like(x)), or sum them with "
                         "gc.unsorted_segment_sum(x, partitions, num_partitions)",
})
_MISSING.update({name: _RECORDS for name in (
    "python_io", "FixedLenFeature", "VarLenFeature", "parse_single_example", "parse_example",
    "train.Example", "train.Features", "train.Feature")})
# image files: decoded outside the step (graphc tensors are numbers with static shapes)
_MISSING.update({f"image.{name}": (
    "graphc decodes no image files inside a step: read them with an image library (PIL's "
    "np.asarray(Image.open(path)), imageio) and feed the arrays") for name in (
    "decode_jpeg", "decode_png", "decode_image", "encode_jpeg", "encode_png", "read_file")})


def missing_attribute(qualname, module, name):
    """The AttributeError for ``module.name``: with what to do instead when ``qualname`` is
    a TF1 name graphc lacks (``_MISSING``), else Python's usual message."""
    message = f"module {module!r} has no attribute {name!r}"
    advice = _MISSING.get(qualname)
    if advice is None:
        return AttributeError(message)
    return AttributeError(f"{message}: graphc does not have tf.{qualname}; {advice}")


def __getattr__(name):
    """Import the module of public ``name`` on first use (and keep the value); for TF1
    names graphc lacks (``tf.keras``...), say so and what to use instead."""
    where = _WHERE.get(name)
    if where is not None:
        module, attr = where
        try:
            loaded = importlib.import_module(module, __name__)
        except ImportError as exc:  # a runtime-only install: graphc.runtime.load still works
            if module.startswith((".runtime", ".errors")):
                raise
            raise AttributeError(f"graphc.{name} needs the compiler, which cannot be imported "
                                 f"here ({exc}); saved steps run with graphc.runtime.load "
                                 "alone") from exc
        value = loaded if attr is None else getattr(loaded, attr)
    elif name == "debugging":  # tf.debugging.assert_*, Assert, check_numerics
        value = importlib.import_module(".ops.debug_ops", __name__).debugging_namespace()
    elif name == "newaxis":
        value = None
    elif name in ("ir", "codegen", "runtime"):  # the compiler's layers, as subpackages
        value = importlib.import_module("." + name, __name__)
    else:
        raise missing_attribute(name, __name__, name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
