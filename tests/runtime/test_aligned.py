"""``runtime.aligned``: the arrays compiled steps keep start on a cache line, whatever NumPy
would have given (empty ones aside), and hold what ``np.array`` would have made; a feed that
views such a variable is still kept apart from it."""
import numpy as np
import pytest

import graphc as gc
from graphc.runtime.aligned import (LINE, SHARED_MAX, aligned_copies, aligned_copy, aligned_empty,
                                    aligned_zeros_each,
                                    aligned_zeros)
from graphc.runtime.calls import may_alias, state_ids


def _on_line(a):
    return a.__array_interface__["data"][0] % LINE == 0


@pytest.mark.parametrize("shape", [(), (0,), (1,), (3, 5), (784, 256), (2, 0, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.bool_])
def test_aligned_arrays_start_on_a_line_and_equal_numpys(shape, dtype):
    for _ in range(8):  # (NumPy's own placement varies between allocations)
        z = aligned_zeros(shape, dtype)
        assert z.shape == shape and z.dtype == dtype and z.flags.c_contiguous
        assert z.flags.writeable and not z.any() and (_on_line(z) or z.size == 0)
    src = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape) / 3
    c = aligned_copy(src, dtype)
    assert (_on_line(c) or c.size == 0) and c.dtype == dtype and c.flags.c_contiguous
    np.testing.assert_array_equal(c, np.array(src, dtype=dtype))
    c_t = aligned_copy(src.T)  # any layout in, C order out
    assert c_t.flags.c_contiguous and np.array_equal(c_t, src.T)
    assert len(aligned_empty(13)) == 13 and _on_line(aligned_empty(13))


def test_a_feed_viewing_an_aligned_variable_is_flagged():
    w = aligned_copy(np.ones((4, 4), np.float32))
    ids = state_ids([w])
    assert may_alias(w, ids) and may_alias(w[1:], ids) and may_alias(w.base[:8], ids)
    assert not may_alias(np.ones((4, 4), np.float32), ids)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_step_and_session_variables_start_on_a_line(backend):
    rng = np.random.default_rng(0)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [8, 30])
        ws = [gc.Variable(rng.standard_normal((30, 30)).astype(np.float32)) for _ in range(6)]
        b = gc.Variable(gc.zeros([30]))  # an initial value computed, not a constant
        h = x
        for w in ws:
            h = gc.tanh(gc.matmul(h, w) + b)
        loss = gc.reduce_mean(h * h)
        train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
        step = gc.compile([loss, train], feeds=[x], backend=backend)
        feed = rng.standard_normal((8, 30)).astype(np.float32)
        first = step({x: feed})[0]
        assert all(_on_line(v) for v in step.variables.values())
        with gc.Session(backend=backend) as sess:
            sess.run(gc.global_variables_initializer())
            assert np.isclose(sess.run([loss, train], {x: feed})[0], first)
            if backend == "llvm":  # (updated in place; the NumPy backend's are new arrays)
                assert all(_on_line(sess.values[v]) for v in ws + [b])


def test_aligned_copies_are_arrays_of_their_own_in_one_buffer():
    """The small copies share one buffer, each on lines no other touches; each holds what
    ``np.array`` would have made, is writable, and changes neither another copy nor its
    source; a large one has its own buffer; a feed viewing the shared one is flagged."""
    rng = np.random.default_rng(0)
    same = rng.standard_normal((3, 5))
    values = [same, same, np.float64(2.5), np.zeros((0, 4)), np.arange(7, dtype=np.int8),
              rng.standard_normal((4, 4)).T, np.ones(SHARED_MAX // 4 + 1, np.float32),
              np.ones(SHARED_MAX // 8, np.float64)]
    dtypes = [np.float32, np.float64, np.float32, np.float32, None, np.float64, None, None]
    copies = aligned_copies(values, dtypes)
    for c, v, d in zip(copies, values, dtypes):
        want = np.array(v, dtype=d)
        assert c.dtype == want.dtype and c.shape == want.shape and c.flags.c_contiguous
        assert c.tobytes() == want.tobytes() and c.flags.writeable
        assert _on_line(c) or c.size == 0
        assert not np.shares_memory(c, v)
    small = [c for c, v in zip(copies, values) if np.asarray(v).nbytes <= SHARED_MAX]
    assert len(small) == 7 and len({id(c.base) for c in small}) == 1
    assert copies[6].base is not small[0].base
    ends = sorted((c.__array_interface__["data"][0], c.nbytes) for c in small if c.size)
    assert all(a + n <= b for (a, n), (b, _) in zip(ends, ends[1:]))  # (no shared line)
    before = [c.copy() for c in copies]
    for k, c in enumerate(copies):
        c[...] = 7
        assert all(np.array_equal(o, b) for j, (o, b) in enumerate(zip(copies, before))
                   if j != k), k
        c[...] = before[k]
    same[0, 0] = 99.0
    assert copies[0][0, 0] != 99.0 and copies[1][0, 0] != 99.0
    ids = state_ids(copies)
    assert may_alias(small[0].base[64:128], ids) and may_alias(small[4][1:], ids)
    assert aligned_copies([], []) == []


def test_aligned_zeros_each_are_zeros_of_their_own_in_one_buffer():
    """A session's variables before their initializers: zeros of each shape and dtype, the
    small ones in one buffer without overlap, each on a line, a large one apart; writing one
    changes no other."""
    shapes = [(3, 5), (), (0, 4), (7,), (SHARED_MAX // 4 + 1,), (2, 3)]
    dtypes = [np.float32, np.float64, np.float32, np.int8, np.float32, np.int64]
    zeros = aligned_zeros_each(shapes, dtypes)
    for z, shape, dtype in zip(zeros, shapes, dtypes):
        assert z.shape == shape and z.dtype == dtype and z.flags.c_contiguous
        assert z.flags.writeable and not z.any() and (_on_line(z) or z.size == 0)
    small = [z for z in zeros if z.nbytes <= SHARED_MAX]
    assert len(small) == 5 and len({id(z.base) for z in small}) == 1
    assert zeros[4].base is not small[0].base
    ends = sorted((z.__array_interface__["data"][0], z.nbytes) for z in small if z.size)
    assert all(a + n <= b for (a, n), (b, _) in zip(ends, ends[1:]))
    for k, z in enumerate(zeros):
        z[...] = 3
        assert not any(o.any() for j, o in enumerate(zeros) if j != k), k
        z[...] = 0


def test_many_copies_of_a_few_shapes_keep_their_order_and_lines():
    """A deep model's many small variables (placed by shape and dtype, side by side): each
    copy is the value at its own position, on lines of its own, and writing one changes no
    other; 0-d values stay 0-d arrays."""
    rng = np.random.default_rng(1)
    kinds = [((8, 8), np.float32), ((8,), np.float32), ((), np.float64), ((3, 1, 5), np.int64),
             ((1,), np.int8)]
    picks = rng.integers(0, len(kinds), 300)
    values = [rng.standard_normal(kinds[k][0]).astype(kinds[k][1]) if kinds[k][0] else
              np.float64(rng.standard_normal()) for k in picks]
    copies = aligned_copies(values, [kinds[k][1] for k in picks])
    for c, v, k in zip(copies, values, picks):
        assert type(c) is np.ndarray and c.shape == kinds[k][0] and c.dtype == kinds[k][1]
        assert c.tobytes() == np.asarray(v, kinds[k][1]).tobytes() and _on_line(c)
        assert c.flags.c_contiguous and c.flags.writeable
    spans = sorted((c.__array_interface__["data"][0], c.nbytes) for c in copies)
    assert all(a + n <= b and b % LINE == 0 for (a, n), (b, _) in zip(spans, spans[1:]))
    for k in (0, 17, 299):
        before = [c.copy() for c in copies]
        copies[k][...] = 5
        assert all(np.array_equal(c, b) for j, (c, b) in enumerate(zip(copies, before)) if j != k)


def test_shapes_given_as_lists_or_tuples_alike_share_groups():
    """``aligned_zeros_each`` takes the shapes nodes declare: lists and tuples mixed are
    one kind each, and every array has its shape."""
    zeros = aligned_zeros_each([(2, 3), [2, 3], [4], (4,), ()], [np.float32] * 5)
    assert [z.shape for z in zeros] == [(2, 3), (2, 3), (4,), (4,), ()]
    assert all(z.dtype == np.float32 and not z.any() for z in zeros)
    assert not any(np.shares_memory(a, b) for k, a in enumerate(zeros) for b in zeros[k + 1:])


def test_many_large_arrays_of_one_shape_share_a_buffer_of_their_own():
    """A deep model's weights (at least GROUP_MIN of one shape over SHARED_MAX bytes) are
    views of one buffer of their shape's, each on its own lines; fewer keep a buffer each,
    and the small ones' buffer is not theirs."""
    from graphc.runtime.aligned import GROUP_MIN
    rng = np.random.default_rng(0)
    big = [rng.standard_normal((40, 50)).astype(np.float32) for _ in range(GROUP_MIN + 1)]
    few = [rng.standard_normal((30, 70)).astype(np.float32) for _ in range(2)]
    small = [rng.standard_normal(5).astype(np.float32) for _ in range(3)]
    values = big + few + small
    copies = aligned_copies(values)
    for got, want in zip(copies, values):
        np.testing.assert_array_equal(got, want)
        assert got.flags.c_contiguous and got.flags.writeable
        assert got.__array_interface__["data"][0] % LINE == 0
    owner = [c.base if c.base is not None else c for c in copies]
    assert all(o is owner[0] for o in owner[:len(big)])
    assert owner[len(big)] is not owner[len(big) + 1] and owner[len(big)] is not owner[0]
    assert owner[-1] is not owner[0] and owner[-1] is owner[-2]
    assert not any(np.shares_memory(a, b) for k, a in enumerate(copies) for b in copies[k + 1:])
    copies[0][...] = 7.0  # (each its own array)
    assert not (copies[1] == 7.0).any()
