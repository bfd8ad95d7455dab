"""Scale folding: an SGD learning rate moves into the gradient seed only when every gradient
it reaches is linear in the seed and ends in an update with that same rate."""
import numpy as np

import graphc as gc

from tests.support.pass_testing import check_passes, mlp, ops, record


def test_sgd_on_an_mlp_loses_one_multiply_per_variable():
    x, y, loss, train, feeds = mlp(sizes=(6, 5, 5, 3), act="tanh")
    opt = check_passes([loss, train], feeds, passes=["prune", "fold", "simplify", "cse",
                                                     "dce", "scale"], steps=3, rtol=1e-12)
    assert record(opt, "scale")["updates_rescaled"] == 6
    subtracts = [n for n in opt.nodes if n.op_name == "subtract" and
                 n.inputs[0].op_name == "variable"]
    assert len(subtracts) == 6 and all(s.inputs[1].op_name != "multiply" for s in subtracts)


def _scale_of(fetches, feeds):
    opt = check_passes(fetches, feeds, passes=["prune", "fold", "cse", "dce", "scale"],
                       steps=2, rtol=1e-12)
    return record(opt, "scale")["updates_rescaled"], opt


def test_a_fetched_gradient_stops_it():
    x, y, loss, train, feeds = mlp()
    w = gc.trainable_variables()[0]
    g, = gc.gradients(loss, [w])
    n, _ = _scale_of([loss, train, g], feeds)
    assert n == 0


def test_two_learning_rates_stop_it():
    x = gc.placeholder(gc.float64, [4], name="x")
    a = gc.Variable(np.ones(4), name="a")
    b = gc.Variable(np.full(4, 2.0), name="b")
    loss = gc.reduce_sum(gc.tanh(x * a + b))  # both gradients flow from one seed
    t1 = gc.train.GradientDescentOptimizer(0.1).minimize(loss, var_list=[a])
    t2 = gc.train.GradientDescentOptimizer(0.2).minimize(loss, var_list=[b])
    n, opt = _scale_of([loss, t1, t2], {x: np.array([0.5, -1.0, 2.0, 0.1])})
    assert n == 0 and ops(opt).count("multiply") >= 2


def test_momentum_is_affine_in_the_gradient_and_is_left_alone():
    x, y, loss, _, feeds = mlp()
    train = gc.train.MomentumOptimizer(0.1, 0.9).minimize(loss)
    n, _ = _scale_of([loss, train], feeds)
    assert n == 0


def test_a_nonlinear_use_of_the_gradient_stops_it():
    x, y, loss, _, feeds = mlp()
    opt_ = gc.train.GradientDescentOptimizer(0.1)
    grads, variables = zip(*opt_.compute_gradients(loss))
    clipped, _ = gc.clip_by_global_norm(list(grads), 1.0)
    train = opt_.apply_gradients(list(zip(clipped, variables)))
    n, _ = _scale_of([loss, train], feeds)
    assert n == 0
