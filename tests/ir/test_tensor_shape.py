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
