"""Node shapes answer TF1's TensorShape API while staying plain tuples for the compiler."""
import graphc as gc


def test_shape_is_tf1_tensorshape_and_a_tuple():
    x = gc.placeholder(gc.float32, [None, 784])
    h = gc.matmul(x, gc.Variable(gc.zeros([784, 10])))
    assert h.shape.as_list() == [None, 10]
    assert h.get_shape().as_list() == [None, 10]
    assert h.shape[1] == 10 and h.shape[0] is None
    assert h.shape == (None, 10) and h.shape.ndims == 2
    assert not h.shape.is_fully_defined()
    assert h.shape[1:].as_list() == [10]
    assert gc.zeros([3, 4]).shape.num_elements() == 12


def test_is_compatible_with_reads_as_tf1():
    s = gc.placeholder(gc.float32, [None, 3]).shape
    assert s.is_compatible_with([5, 3]) and s.is_compatible_with(gc.TensorShape([None, None]))
    assert not s.is_compatible_with([5, 4]) and not s.is_compatible_with([5, 3, 1])
    assert gc.TensorShape(None).is_compatible_with([1, 2, 3])
    assert gc.TensorShape([2, 3]).is_compatible_with(gc.TensorShape(None))
    assert gc.TensorShape([]).is_compatible_with(()) and not gc.TensorShape([]).is_compatible_with([1])
