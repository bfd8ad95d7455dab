"""TF1 names graphc lacks raise an AttributeError that says so and what to do instead
(graphc/__init__.py's module ``__getattr__``); any other missing name keeps Python's usual
message, and ``hasattr`` stays False for both."""
import pytest

import graphc as tf


@pytest.mark.parametrize("name,advice", [
    ("keras", r"not Keras: use gc.layers"),
    ("estimator", r"gc.Session and a gc.train optimizer"),
    ("lite", r"no TFLite converter"),
    ("saved_model", r"gc.train.Saver"),
    ("gfile", r"Python's open\(\) and os"),
])
def test_curated_tf1_names_say_what_to_do(name, advice):
    with pytest.raises(AttributeError, match=rf"^module 'graphc' has no attribute '{name}': "
                       rf"graphc does not have tf\.{name}; ") as info:
        getattr(tf, name)
    assert info.match(advice)
    assert not hasattr(tf, name)


def test_tf_data_tfrecord_dataset_points_to_numpy_datasets():
    with pytest.raises(AttributeError, match=r"'graphc.data' has no attribute "
                       r"'TFRecordDataset': graphc does not have tf\.data\.TFRecordDataset; "
                       r".*gc\.data\.Dataset"):
        tf.data.TFRecordDataset  # noqa: B018
    assert tf.data.load_digits and tf.data.Dataset  # the real module still works


@pytest.mark.parametrize("qualname,advice", [
    ("train.start_queue_runners", r"no input queues or queue runners: build a gc\.data\.Dataset"),
    ("train.shuffle_batch", r"make_one_shot_iterator\(\), or feed NumPy batches"),
    ("train.Coordinator", r"no input queues"),
    ("FIFOQueue", r"no input queues"),
    ("train.Example", r"reads no TFRecords: keep the data as NumPy arrays"),
    ("parse_single_example", r"reads no TFRecords"),
    ("python_io", r"reads no TFRecords"),
])
def test_tf1_input_pipelines_say_what_to_do(qualname, advice):
    owner, _, name = qualname.rpartition(".")
    module = getattr(tf, owner) if owner else tf
    with pytest.raises(AttributeError, match=rf"has no attribute '{name}': graphc does not have "
                       rf"tf\.{qualname}; ") as info:
        getattr(module, name)
    assert info.match(advice)
    assert not hasattr(module, name)
    assert tf.train.AdamOptimizer and tf.train.Saver  # the real module still works


def test_curated_names_are_really_missing():
    """A name graphc gains must leave the table (its advice would never show)."""
    from graphc import _MISSING
    for qualname in _MISSING:
        owner, _, name = qualname.rpartition(".")
        module = getattr(tf, owner) if owner else tf
        assert name not in vars(module), qualname


def test_loops_are_no_longer_missing():
    """while_loop, map_fn, scan, foldl, foldr are unrolled when the graph is built
    (tests/api/test_loops.py); they left the table."""
    from graphc import _MISSING
    for name in ("while_loop", "map_fn", "scan", "foldl", "foldr"):
        assert callable(getattr(tf, name)) and name not in _MISSING


def test_names_graphc_gained_left_the_table():
    """TensorArray (tests/api/test_tensor_array.py), app, flags and logging
    (tests/api/test_compat_shims.py), contrib (tests/api/test_contrib.py), Print, print, Assert,
    py_func and numpy_function (tests/api/test_host_calls.py) are provided now."""
    from graphc import _MISSING
    for name in ("TensorArray", "app", "flags", "logging", "contrib", "Print", "print",
                 "Assert", "py_func", "numpy_function"):
        assert getattr(tf, name) is not None and name not in _MISSING


def test_other_missing_names_keep_pythons_message():
    with pytest.raises(AttributeError, match=r"^module 'graphc' has no attribute 'no_such'$"):
        tf.no_such  # noqa: B018
    with pytest.raises(AttributeError, match=r"^module 'graphc.data' has no attribute 'zzz'$"):
        tf.data.zzz  # noqa: B018
    with pytest.raises(ImportError):
        from graphc import no_such_name  # noqa: F401
