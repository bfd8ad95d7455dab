"""gc.train.global_step (a Python int) and gc.train.get_checkpoint_state over the
checkpoints Saver writes: newest path, every kept path oldest first, None when empty."""
import os

import numpy as np

import graphc as gc


def _model():
    step = gc.train.get_or_create_global_step()
    w = gc.Variable(np.float32(1.0), name="w")
    train_op = gc.group(gc.assign(w, w * 2.0), gc.assign_add(step, 1))
    return step, w, train_op


def test_global_step_returns_the_current_int():
    with gc.Graph().as_default():
        step, _, train_op = _model()
        with gc.Session() as sess:
            sess.run(gc.global_variables_initializer())
            assert gc.train.global_step(sess, step) == 0
            for _ in range(3):
                sess.run(train_op)
            got = gc.train.global_step(sess, step)
            assert got == 3 and type(got) is int


def test_get_checkpoint_state_lists_kept_checkpoints_newest_last(tmp_path):
    assert gc.train.get_checkpoint_state(str(tmp_path)) is None
    assert gc.train.get_checkpoint_state(str(tmp_path / "absent")) is None
    with gc.Graph().as_default():
        step, w, train_op = _model()
        saver = gc.train.Saver(max_to_keep=2)
        with gc.Session() as sess:
            sess.run(gc.global_variables_initializer())
            paths = []
            for k in range(3):  # steps 1, 2, 3; the first is deleted (max_to_keep=2)
                sess.run(train_op)
                paths.append(saver.save(sess, str(tmp_path / "model"), global_step=step))
                os.utime(paths[-1] + ".npz", ns=(10**9 * (k + 1),) * 2)  # distinct write times
            state = gc.train.get_checkpoint_state(tmp_path)
            assert state.model_checkpoint_path == paths[-1]
            assert state.model_checkpoint_path == str(tmp_path / "model-3")
            assert state.all_model_checkpoint_paths == paths[1:]
            assert state.model_checkpoint_path == gc.train.latest_checkpoint(str(tmp_path))
            sess.run(train_op)
            saver.restore(sess, state.model_checkpoint_path)
            assert sess.run(w) == 8.0 and gc.train.global_step(sess, step) == 3
