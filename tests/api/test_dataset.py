"""tf.data for TF1 scripts: Dataset transformations against plain Python, and iterators whose
get_next() placeholders Session.run feeds (one element per run and iterator) on both backends,
ending with OutOfRangeError."""
import math

import numpy as np
import pytest

import graphc as tf
from graphc.errors import FeedError, GraphError, OutOfRangeError

BACKENDS = ["numpy", "llvm"]


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield


def values(ds):
    """A dataset's elements as plain Python numbers (scalars) or lists."""
    return [np.asarray(e).tolist() if not isinstance(e, tuple) else
            tuple(np.asarray(c).tolist() for c in e) for e in ds]


def regression(n=100, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return x, x @ np.array([[1.0], [2.0], [-1.0]], np.float32)


# -- the TF1 loop ------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_tf1_input_loop_trains_and_ends_with_out_of_range(backend):
    x_np, y_np = regression(100)
    ds = tf.data.Dataset.from_tensor_slices((x_np, y_np)).shuffle(1000, seed=1).batch(32)
    it = ds.repeat(3).make_one_shot_iterator()
    xb, yb = it.get_next()
    w = tf.Variable(np.zeros((3, 1), np.float32))
    loss = tf.reduce_mean(tf.square(tf.matmul(xb, w) - yb))
    train = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
    losses = []
    with tf.Session(backend=backend) as sess:
        sess.run(tf.global_variables_initializer())
        while True:
            try:
                losses.append(sess.run([loss, train])[0])
            except tf.errors.OutOfRangeError:
                break
        with pytest.raises(OutOfRangeError, match="end of sequence"):
            sess.run(loss)  # stays exhausted
    assert len(losses) == math.ceil(100 / 32) * 3
    assert losses[-1] < 0.2 * losses[0]


def test_out_of_range_is_tf_errors_name():
    assert tf.errors.OutOfRangeError is OutOfRangeError
    assert issubclass(OutOfRangeError, tf.errors.GraphcError)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_element_per_run_even_when_several_components_are_fetched(backend):
    x = np.arange(10, dtype=np.float32)
    it = tf.data.Dataset.from_tensor_slices((x, 2 * x)).make_one_shot_iterator()
    a, b = it.get_next()
    with tf.Session(backend=backend) as sess:
        assert sess.run([a + 1.0, b]) == [1.0, 0.0]
        assert sess.run(b) == 2.0  # component b of the second element
        assert sess.run(a) == 2.0
        assert sess.run((a, b)) == (3.0, 6.0)


# -- batch -------------------------------------------------------------------------------------
def test_batch_shapes_and_remainder():
    x = np.arange(10 * 2, dtype=np.int32).reshape(10, 2)
    ds = tf.data.Dataset.from_tensor_slices(x)
    assert ds.batch(4).output_shapes.as_list() == [None, 2]
    assert [b.shape for b in ds.batch(4)] == [(4, 2), (4, 2), (2, 2)]
    dropped = ds.batch(4, drop_remainder=True)
    assert dropped.output_shapes.as_list() == [4, 2]
    assert [b.shape for b in dropped] == [(4, 2), (4, 2)]
    np.testing.assert_array_equal(np.concatenate(list(ds.batch(3))), x)
    p = dropped.make_one_shot_iterator().get_next()
    assert p.shape == (4, 2) and p.dtype == tf.int32


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_last_batch_is_fed_through_the_none_dim(backend):
    it = tf.data.Dataset.from_tensor_slices(np.ones((5, 3), np.float32)).batch(2) \
        .make_one_shot_iterator()
    total = tf.reduce_sum(it.get_next(), axis=1)
    with tf.Session(backend=backend) as sess:
        got = [sess.run(total).tolist() for _ in range(3)]
    assert got == [[3.0, 3.0], [3.0, 3.0], [3.0]]


def test_batch_of_dicts_and_nested_tuples():
    ds = tf.data.Dataset.from_tensor_slices({"a": np.arange(4), "b": (np.ones(4), np.zeros(4))})
    batch = next(iter(ds.batch(3)))
    assert set(batch) == {"a", "b"} and batch["a"].tolist() == [0, 1, 2]
    assert batch["b"][0].shape == (3,)
    nxt = ds.batch(3).make_one_shot_iterator().get_next()
    assert nxt["a"].dtype == tf.int64 and nxt["b"][1].dtype == tf.float64


# -- shuffle -----------------------------------------------------------------------------------
@pytest.mark.parametrize("buffer", [1, 7, 50, 1000])
def test_shuffle_is_a_permutation(buffer):
    out = values(tf.data.Dataset.range(50).shuffle(buffer, seed=3))
    assert sorted(out) == list(range(50))
    assert (out == list(range(50))) == (buffer == 1)  # a buffer of 1 keeps the order


def test_small_buffer_shuffles_locally():
    out = values(tf.data.Dataset.range(100).shuffle(5, seed=0))
    # the i-th element out was among the first i+5 in
    assert all(v < i + 5 for i, v in enumerate(out))


def test_shuffle_seeded_reproducible_and_reshuffles_per_epoch():
    ds = tf.data.Dataset.range(20).shuffle(20, seed=7).repeat(3)
    first, again = values(ds), values(ds)
    assert first == again
    epochs = [first[20 * k:20 * (k + 1)] for k in range(3)]
    assert all(sorted(e) == list(range(20)) for e in epochs)
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]
    fixed = values(tf.data.Dataset.range(20).shuffle(20, seed=7,
                                                     reshuffle_each_iteration=False).repeat(2))
    assert fixed[:20] == fixed[20:]
    assert values(tf.data.Dataset.range(20).shuffle(20, seed=8)) != epochs[0]


def test_unseeded_shuffle_differs_between_passes():
    ds = tf.data.Dataset.range(50).shuffle(50)
    assert values(ds) != values(ds)


# -- other transformations against Python ------------------------------------------------------
def test_map_filter_take_skip_range_semantics():
    D = tf.data.Dataset
    assert values(D.range(3, 20, 4)) == list(range(3, 20, 4))
    assert values(D.range(10).map(lambda v: v * v).filter(lambda v: v % 2 == 0)) == \
        [v * v for v in range(10) if v * v % 2 == 0]
    assert values(D.range(10).take(3)) == [0, 1, 2]
    assert values(D.range(10).take(-1)) == list(range(10))
    assert values(D.range(10).skip(7)) == [7, 8, 9]
    assert values(D.range(10).skip(-1)) == []
    assert values(D.range(3).repeat(2)) == [0, 1, 2, 0, 1, 2]
    assert values(D.range(3).prefetch(tf.data.experimental.AUTOTUNE).cache()) == [0, 1, 2]
    assert values(D.from_tensors(np.array([1, 2]))) == [[1, 2]]
    assert D.range(3).output_types == tf.int64


def test_zip_stops_at_the_shortest_and_nests():
    D = tf.data.Dataset
    assert values(D.zip((D.range(3), D.range(10, 20)))) == [(0, 10), (1, 11), (2, 12)]
    both = next(iter(D.zip({"x": D.range(2), "y": D.from_tensor_slices(np.ones((2, 4)))})))
    assert both["x"] == 0 and both["y"].shape == (4,)


def test_map_unpacks_tuples_and_keeps_an_unknown_batch_dim():
    x, y = np.arange(12, dtype=np.uint8).reshape(6, 2), np.arange(6)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    mapped = ds.map(lambda a, b: (tf.cast(a, tf.float32) / 255.0, b))  # gc ops on constants
    assert mapped.output_types == (tf.float32, tf.int64)
    assert mapped.output_shapes[0].as_list() == [None, 2]
    first = next(iter(mapped))
    np.testing.assert_allclose(first[0], x[:4] / 255.0, rtol=1e-6)
    assert len(tf.get_default_graph().get_operations()) == 0  # a scratch graph took the ops


def test_map_failing_on_arrays_says_numpy():
    ds = tf.data.Dataset.range(3).map(lambda v: v.no_such_method())
    with pytest.raises(GraphError, match=r"Dataset.map: the function failed on NumPy "
                                         r"arrays(.|\n)*not graph tensors"):
        list(ds)


def test_pipelines_of_placeholders_are_refused():
    x = tf.placeholder(tf.float32, [None, 3])
    with pytest.raises(GraphError, match=r"depends on .*placeholder(.|\n)*NumPy arrays"):
        tf.data.Dataset.from_tensor_slices(x)


def test_bad_inputs_are_clear():
    D = tf.data.Dataset
    with pytest.raises(GraphError, match="components differ in length"):
        D.from_tensor_slices((np.ones(3), np.ones(4)))
    with pytest.raises(GraphError, match="needs a leading dimension"):
        D.from_tensor_slices(np.float32(1))
    with pytest.raises(GraphError, match="different shapes within one batch"):
        list(D.range(1, 4).map(lambda n: np.ones(n)).batch(2))
    with pytest.raises(GraphError, match="scalar bool"):
        list(D.range(3).filter(lambda v: np.array([True, False])))


# -- iterators ---------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_initializable_iterator_restarts(backend):
    it = tf.data.Dataset.range(3).make_initializable_iterator()
    nxt = it.get_next() * 10
    with tf.Session(backend=backend) as sess:
        with pytest.raises(GraphError, match="not been initialized"):
            sess.run(nxt)
        for _ in range(2):
            sess.run(it.initializer)
            assert [sess.run(nxt) for _ in range(3)] == [0, 10, 20]
            with pytest.raises(OutOfRangeError):
                sess.run(nxt)
        sess.run(tf.group(it.initializer))  # also when grouped
        assert sess.run(nxt) == 0


def test_one_shot_iterator_has_no_initializer():
    with pytest.raises(GraphError, match="one-shot"):
        tf.data.Dataset.range(3).make_one_shot_iterator().initializer  # noqa: B018


@pytest.mark.parametrize("backend", BACKENDS)
def test_reinitializable_iterator_switches_datasets(backend):
    train, test = tf.data.Dataset.range(5), tf.data.Dataset.range(100, 102)
    it = tf.data.Iterator.from_structure(train.output_types, train.output_shapes)
    nxt = it.get_next()
    with tf.Session(backend=backend) as sess:
        sess.run(it.make_initializer(test))
        assert [sess.run(nxt) for _ in range(2)] == [100, 101]
        sess.run(it.make_initializer(train))
        assert sess.run(nxt) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_explicit_feed_overrides_the_pipeline(backend):
    it = tf.data.Dataset.from_tensor_slices(np.arange(5, dtype=np.float32)) \
        .make_one_shot_iterator()
    v = it.get_next()
    doubled = v * 2.0
    with tf.Session(backend=backend) as sess:
        assert sess.run(doubled, {v: 21.0}) == 42.0
        assert sess.run(doubled) == 0.0  # the fed run did not advance the iterator
        with pytest.raises(FeedError):
            sess.run(doubled, {v: [1.0, 2.0]})


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_iterators_advance_independently(backend):
    a = tf.data.Dataset.range(10).make_one_shot_iterator().get_next()
    b = tf.data.Dataset.range(100, 110).make_one_shot_iterator().get_next()
    with tf.Session(backend=backend) as sess:
        assert sess.run(a) == 0 and sess.run(a) == 1
        assert sess.run([a, b]) == [2, 100]
        assert sess.run(b) == 101 and sess.run(a) == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_run_not_needing_the_iterator_does_not_advance_it(backend):
    nxt = tf.data.Dataset.range(10).make_one_shot_iterator().get_next()
    c = tf.Variable(1.0)
    with tf.Session(backend=backend) as sess:
        sess.run(tf.global_variables_initializer())
        assert sess.run(nxt) == 0
        for _ in range(3):
            sess.run(c * 2.0)
        assert sess.run(nxt) == 1


def test_compat_functions_and_missing_names():
    ds = tf.data.Dataset.range(2)
    it = tf.data.make_one_shot_iterator(ds)
    with tf.Session() as sess:
        assert sess.run(it.get_next()) == 0
    assert tf.data.make_initializable_iterator(ds).initializer.op_name == "group"
    from graphc import _MISSING
    assert "data.Dataset" not in _MISSING and "data.Iterator" not in _MISSING
    with pytest.raises(AttributeError, match="TFRecordDataset"):
        tf.data.TFRecordDataset  # noqa: B018


def test_from_generator():
    def gen():
        for i in range(3):
            yield i, [i] * 2
    ds = tf.data.Dataset.from_generator(gen, (tf.int32, tf.float32))
    assert ds.output_shapes[1].as_list() == [2]
    assert values(ds) == [(0, [0.0, 0.0]), (1, [1.0, 1.0]), (2, [2.0, 2.0])]
    shaped = tf.data.Dataset.from_generator(gen, (tf.int32, tf.float32), ((), (None,)))
    assert shaped.output_shapes[1].as_list() == [None]


def test_compiled_steps_take_the_batch_explicitly():
    """gc.compile steps do not pull from iterators: feed them Python-iterated batches."""
    x_np, y_np = regression(40)
    ds = tf.data.Dataset.from_tensor_slices((x_np, y_np)).batch(8, drop_remainder=True)
    xb, yb = ds.make_one_shot_iterator().get_next()
    loss = tf.reduce_sum(tf.square(xb)) + tf.reduce_sum(yb)
    step = tf.compile(loss, feeds=[xb, yb])
    got = [float(step({xb: a, yb: b})) for a, b in ds]
    want = [float((x_np[i:i + 8] ** 2).sum() + y_np[i:i + 8].sum()) for i in range(0, 40, 8)]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_a_session_leaves_tf_data_unimported_until_an_iterator_is_made():
    """A Session in a program that never uses tf.data does not import it (2 ms of modules);
    an iterator made after the session's first runs, in the same process, is still pulled
    from: the session's remembered steps notice it."""
    import subprocess
    import sys
    code = """
import sys
import numpy as np
import graphc as tf
x = tf.placeholder(tf.float32, [2])
y = x * 2.0
sess = tf.Session(backend="numpy")
for _ in range(2):
    assert sess.run(y, {x: np.ones(2, np.float32)}).tolist() == [2.0, 2.0]
assert "graphc.data" not in sys.modules
it = tf.data.Dataset.from_tensor_slices(np.arange(6.0, dtype=np.float32).reshape(3, 2)) \\
    .make_one_shot_iterator()
z = it.get_next() * 2.0
print(sess.run(z).tolist(), sess.run(z).tolist(), sess.run(y, {x: np.ones(2, np.float32)}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split("] [")[0] == "[0.0, 2.0" and "[4.0, 6.0]" in out
