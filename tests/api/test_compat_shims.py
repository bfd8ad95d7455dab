"""tf.logging, tf.flags (tf.app.flags) and tf.app.run: a typical TF1 script header runs in a
subprocess with command-line arguments (flags parsed, unknown ones passed to main, INFO logs
on stderr, main's return value as the exit status, bad values and --help); flag parsing forms,
lazy parsing, errors and the logger in-process."""
import logging as pylogging
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphc as tf
from graphc.compat import shims as compat_shims

SCRIPT = textwrap.dedent('''
    import sys
    import numpy as np
    import graphc as tf

    flags = tf.app.flags
    FLAGS = flags.FLAGS
    flags.DEFINE_integer("steps", 3, "training steps", lower_bound=1)
    flags.DEFINE_float("learning_rate", 0.5, "learning rate")
    flags.DEFINE_boolean("verbose", False, "log every step")
    tf.flags.DEFINE_string("tag", "run", "a tag for the result line")
    tf.flags.DEFINE_enum("init", "zeros", ["zeros", "ones"], "initial weights")
    tf.logging.set_verbosity(tf.logging.INFO)


    def main(argv):
        tf.logging.info("passed through: %s", argv[1:])
        x = tf.placeholder(tf.float32, [4, 2])
        y = tf.placeholder(tf.float32, [4])
        w = tf.Variable(np.zeros(2, np.float32) if FLAGS.init == "zeros" else np.ones(2, np.float32))
        loss = tf.reduce_mean(tf.square(tf.reduce_sum(x * w, 1) - y))
        train = tf.train.GradientDescentOptimizer(FLAGS.learning_rate).minimize(loss)
        feeds = {x: np.eye(4, 2, dtype=np.float32), y: np.array([1, 2, 0, 0], np.float32)}
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for step in range(FLAGS.steps):
                _, value = sess.run([train, loss], feeds)
                if FLAGS.verbose:
                    tf.logging.info("step %d loss %.6f", step, value)
            tf.logging.debug("not shown at INFO")
            print("RESULT", FLAGS.tag, *sess.run(w).tolist())
        return 3


    if __name__ == "__main__":
        tf.app.run()
''')


def _run_script(tmp_path, *args):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    return subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)


def _expected_weights(steps, lr, w0):
    x, y, w = np.eye(4, 2), np.array([1.0, 2.0, 0.0, 0.0]), np.array(w0, np.float64)
    for _ in range(steps):
        w = w - lr * 2 * x.T @ (x @ w - y) / 4
    return w


def test_tf1_script_header_runs_with_command_line_flags(tmp_path):
    done = _run_script(tmp_path, "--steps", "4", "--learning_rate=0.25", "--verbose",
                       "--tag=abc", "data.csv", "--unknown=1", "--init", "ones")
    assert done.returncode == 3, done.stderr  # main's return value, through sys.exit
    result = done.stdout.split()
    assert result[:2] == ["RESULT", "abc"]
    np.testing.assert_allclose([float(v) for v in result[2:]],
                               _expected_weights(4, 0.25, [1.0, 1.0]), rtol=1e-5)
    log = done.stderr.splitlines()
    assert log[0] == "INFO:graphc:passed through: ['data.csv', '--unknown=1']"
    assert [line.split()[0] for line in log[1:]] == ["INFO:graphc:step"] * 4
    assert "not shown" not in done.stderr


def test_tf1_script_defaults_and_quiet_booleans(tmp_path):
    done = _run_script(tmp_path, "--noverbose")
    assert done.returncode == 3, done.stderr
    np.testing.assert_allclose([float(v) for v in done.stdout.split()[2:]],
                               _expected_weights(3, 0.5, [0.0, 0.0]), rtol=1e-5)
    assert done.stdout.split()[1] == "run" and "step" not in done.stderr


@pytest.mark.parametrize("args,message", [
    (["--steps=abc"], r"flag --steps: 'abc' is not a valid integer"),
    (["--steps=0"], r"flag --steps=0: must be >= 1"),
    (["--init=random"], r"must be one of \['zeros', 'ones'\]"),
])
def test_tf1_script_bad_flag_values_exit_with_status_1(tmp_path, args, message):
    done = _run_script(tmp_path, *args)
    assert done.returncode == 1 and "RESULT" not in done.stdout
    assert "FATAL Flags parsing error: " in done.stderr
    assert re.search(message, done.stderr), done.stderr


def test_tf1_script_help_lists_the_flags(tmp_path):
    done = _run_script(tmp_path, "--help")
    assert done.returncode == 0 and "RESULT" not in done.stdout
    for flag in ("--steps: training steps", "--learning_rate", "--verbose", "--tag", "--init"):
        assert flag in done.stdout


# -- in-process ------------------------------------------------------------------------------

@pytest.fixture
def fv():
    """A fresh FlagValues (tf.flags.FLAGS is shared by the whole process)."""
    return tf.flags.FlagValues()


def test_parsing_forms_and_remaining_arguments(fv):
    f = tf.flags
    f.DEFINE_integer("n", 1, "", flag_values=fv)
    f.DEFINE_float("lr", 0.1, "", flag_values=fv)
    f.DEFINE_bool("fast", True, "", flag_values=fv)
    f.DEFINE_list("sizes", "8,4", "", flag_values=fv)
    f.DEFINE_string("name", None, "", flag_values=fv)
    rest = fv(["prog", "--n", "7", "pos", "--lr=-2.5", "--nofast", "--sizes=1,2,3",
               "--other", "--name", "x y", "--", "--n=9"])
    assert rest == ["prog", "pos", "--other", "--", "--n=9"]
    assert (fv.n, fv.lr, fv.fast, fv.sizes, fv.name) == (7, -2.5, False, ["1", "2", "3"],
                                                         "x y")
    fv(["prog", "--fast"])
    assert fv.fast is True and fv.is_parsed()
    fv(["prog", "--fast=false"])
    assert fv.fast is False
    fv(["prog", "--fast", "--n=2"])
    assert fv.flag_values_dict() == {"n": 2, "lr": -2.5, "fast": True, "sizes": ["1", "2", "3"],
                                     "name": "x y"}
    fv.n = 11  # TF1 lets a script set a value
    assert fv.n == 11 and "n" in fv and sorted(fv) == ["fast", "lr", "n", "name", "sizes"]


def test_flags_parse_sys_argv_lazily_leaving_unknown_ones(fv, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["prog", "--depth=5", "--mystery", "3"])
    tf.flags.DEFINE_integer("depth", 2, "", flag_values=fv)
    assert not fv.is_parsed()
    assert fv.depth == 5 and fv.is_parsed()
    monkeypatch.setattr(sys, "argv", ["prog", "--depth=6"])
    assert fv.depth == 5  # parsed once, as TF1
    tf.flags.DEFINE_boolean("mystery", False, "", flag_values=fv)  # defined after parsing:
    assert fv.mystery is True  # its command-line value still applies ('--mystery' alone)
    fv.unparse_flags()
    assert fv.depth == 6


def test_flag_errors(fv):
    tf.flags.DEFINE_integer("k", 3, "", flag_values=fv, upper_bound=5)
    with pytest.raises(tf.flags.DuplicateFlagError, match=r"flag --k is defined twice"):
        tf.flags.DEFINE_string("k", "a", "", flag_values=fv)
    with pytest.raises(AttributeError, match=r"no flag named 'nope'; define it with "
                       r"gc.flags.DEFINE_"):
        fv.nope  # noqa: B018
    with pytest.raises(tf.flags.IllegalFlagValueError, match=r"--k=9: must be <= 5"):
        fv(["prog", "--k=9"])
    with pytest.raises(tf.flags.IllegalFlagValueError, match=r"argument --k: expected one"):
        fv(["prog", "--k"])
    tf.flags.DEFINE_bool("b", False, "", flag_values=fv)
    with pytest.raises(tf.flags.IllegalFlagValueError, match=r"--b: 'maybe' is not a valid "
                       r"bool"):
        fv(["prog", "--b=maybe"])


def test_app_run_calls_main_with_the_remaining_argv_and_exits(fv, monkeypatch):
    monkeypatch.setattr(compat_shims, "FLAGS", fv)
    tf.flags.DEFINE_integer("epochs", 1, "", flag_values=fv)
    seen = []
    with pytest.raises(SystemExit) as info:
        tf.app.run(lambda argv: seen.append((argv, fv.epochs)), ["prog", "--epochs=4", "x"])
    assert info.value.code is None and seen == [(["prog", "x"], 4)]


def test_logging_levels_on_the_graphc_logger(caplog):
    log = tf.logging
    assert (log.DEBUG, log.INFO, log.WARN, log.ERROR, log.FATAL) == (10, 20, 30, 40, 50)
    before = log.get_verbosity()
    try:
        with caplog.at_level(pylogging.DEBUG, logger="graphc"):
            log.set_verbosity(log.INFO)
            log.debug("hidden")
            log.info("step %d", 3)
            log.warning("careful")
            log.error("bad")
            for k in range(5):
                log.log_every_n(log.INFO, "every %d", 2, k)
                log.log_first_n(log.INFO, "first %d", 1, k)
            assert log.get_verbosity() == log.INFO
        messages = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
        assert messages == [("graphc", "INFO", "step 3"), ("graphc", "WARNING", "careful"),
                            ("graphc", "ERROR", "bad"), ("graphc", "INFO", "every 0"),
                            ("graphc", "INFO", "first 0"), ("graphc", "INFO", "every 2"),
                            ("graphc", "INFO", "every 4")]
        assert {r.filename for r in caplog.records} == {"test_compat_shims.py"}
    finally:
        log.set_verbosity(before)


def test_shims_are_the_tf1_names():
    assert tf.app.flags is tf.flags and tf.flags.FLAGS is compat_shims.FLAGS
    assert tf.flags.DEFINE_bool is tf.flags.DEFINE_boolean
    assert callable(tf.app.run) and callable(tf.logging.info)
