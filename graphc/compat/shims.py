"""``tf.logging``, ``tf.flags`` (``tf.app.flags``) and ``tf.app.run``: the header of a TF1
script, on Python's ``logging`` and ``argparse``.

- ``gc.logging``: ``set_verbosity(gc.logging.INFO)``, ``debug/info/warning/warn/error/fatal``,
  ``log``, ``vlog``, ``log_every_n``, ``log_first_n``, on a ``logging`` logger named "graphc"
  (WARN by default, as TF1; a stderr handler ``INFO:graphc:message`` is added when the root
  logger has none, so an application's own logging configuration wins).
- ``gc.flags``: ``DEFINE_string/integer/float/boolean/bool/list/enum`` into ``FLAGS``, whose
  values are parsed from ``sys.argv`` on first access (unknown flags are left alone;
  ``--name=value``, ``--name value``, ``--name``/``--noname`` for booleans), or explicitly by
  ``FLAGS(argv)``, which returns the arguments it did not consume.
- ``gc.app.run(main=None, argv=None)``: parses the flags, calls ``main(remaining_argv)`` and
  exits with its return value (``sys.exit``), as TF1 does; a bad flag value prints the error
  and exits with status 1, ``--help`` lists the flags.
"""
import argparse
import logging as _logging
import sys
import types

__all__ = ["app", "flags", "logging"]


# -- tf.logging ------------------------------------------------------------------------------

_LOGGER = _logging.getLogger("graphc")
_LOGGER.setLevel(_logging.WARNING)
_COUNTS = {}


def _get_logger():
    """The "graphc" logger, with a stderr handler unless the application configured logging."""
    if not _LOGGER.handlers and not _logging.getLogger().handlers:
        handler = _logging.StreamHandler(sys.stderr)
        handler.setFormatter(_logging.Formatter(_logging.BASIC_FORMAT))
        _LOGGER.addHandler(handler)
        _LOGGER.propagate = False  # the root logger would print it a second time once set up
    return _LOGGER


def _log(level, msg, *args, **kwargs):
    """Every public function calls this directly: the record names the user's line."""
    _get_logger().log(level, msg, *args, stacklevel=3, **kwargs)


def set_verbosity(level):
    """Log messages at ``level`` and above (``gc.logging.INFO``, ``DEBUG``, ``WARN``...).

    Example:
        >>> gc.logging.set_verbosity(gc.logging.INFO)
    """
    _get_logger().setLevel(level)


def _log_every_n(level, msg, n, *args):
    """Log the 1st, (n+1)-th, (2n+1)-th... call made from the same line."""
    key = _caller_key()
    count = _COUNTS[key] = _COUNTS.get(key, 0) + 1
    if (count - 1) % max(int(n), 1) == 0:
        _log(level, msg, *args)


def _log_first_n(level, msg, n, *args):
    """Log only the first ``n`` calls made from the same line."""
    key = _caller_key()
    count = _COUNTS[key] = _COUNTS.get(key, 0) + 1
    if count <= n:
        _log(level, msg, *args)


def _caller_key():
    frame = sys._getframe(2)
    return frame.f_code.co_filename, frame.f_lineno


logging = types.ModuleType("graphc.logging", "TF1's tf.logging on the 'graphc' logger.")
logging.__dict__.update(
    DEBUG=_logging.DEBUG, INFO=_logging.INFO, WARN=_logging.WARNING, ERROR=_logging.ERROR,
    FATAL=_logging.FATAL, set_verbosity=set_verbosity,
    get_verbosity=lambda: _get_logger().getEffectiveLevel(),
    debug=lambda msg, *a, **k: _log(_logging.DEBUG, msg, *a, **k),
    info=lambda msg, *a, **k: _log(_logging.INFO, msg, *a, **k),
    warning=lambda msg, *a, **k: _log(_logging.WARNING, msg, *a, **k),
    warn=lambda msg, *a, **k: _log(_logging.WARNING, msg, *a, **k),
    error=lambda msg, *a, **k: _log(_logging.ERROR, msg, *a, **k),
    fatal=lambda msg, *a, **k: _log(_logging.FATAL, msg, *a, **k),
    log=lambda level, msg, *a, **k: _log(level, msg, *a, **k),
    vlog=lambda level, msg, *a, **k: _log(level, msg, *a, **k), log_if=lambda level, msg, condition, *a: condition and _log(
        level, msg, *a),
    log_every_n=_log_every_n, log_first_n=_log_first_n, flush=lambda: None,
    get_logger=_get_logger)


# -- tf.flags --------------------------------------------------------------------------------

class DuplicateFlagError(ValueError):
    """A flag name defined twice."""


class IllegalFlagValueError(ValueError):
    """A command-line value a flag cannot take (``--steps=abc``, out of bounds, not in enum)."""


class _ParserError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse, reporting errors to the caller instead of exiting the program."""

    def error(self, message):
        raise _ParserError(message)


class _Flag:
    """One defined flag: how to parse a string into its value, and its checks."""

    def __init__(self, name, default, help, kind, parse, short_name=None, check=None):
        self.name, self.default, self.help, self.kind = name, default, help, kind
        self.parse, self.short_name, self.check = parse, short_name, check

    def convert(self, text):
        try:
            value = self.parse(text) if isinstance(text, str) else text
        except ValueError:
            raise IllegalFlagValueError(f"flag --{self.name}: {text!r} is not a valid "
                                        f"{self.kind}") from None
        if self.check is not None and value is not None:
            problem = self.check(value)
            if problem:
                raise IllegalFlagValueError(f"flag --{self.name}={text}: {problem}")
        return value

    def add_to(self, parser):
        names = [f"--{self.name}"] + ([f"-{self.short_name}"] if self.short_name else [])
        if self.kind == "bool":  # --name=value was rewritten to --name or --noname
            parser.add_argument(*names, dest=self.name, action="store_const", const=True)
            parser.add_argument(f"--no{self.name}", dest=self.name, action="store_const",
                                const=False)
        else:
            parser.add_argument(*names, dest=self.name)


def _parse_bool(text):
    lowered = text.strip().lower()
    if lowered in ("true", "t", "1", "yes", "y"):
        return True
    if lowered in ("false", "f", "0", "no", "n"):
        return False
    raise ValueError(text)


def _bool_token(token, bools):
    """``--name=false`` -> ``--noname`` for a boolean flag (a boolean takes no separate
    value, so ``--name value`` leaves ``value`` alone, as TF1)."""
    name, eq, text = token.lstrip("-").partition("=")
    if not (eq and token.startswith("-") and name in bools):
        return token
    return f"--{name}" if bools[name].convert(text) else f"--no{name}"


class FlagValues:
    """TF1's ``FLAGS``: defined flags and their values, parsed from ``sys.argv`` when a value
    is first read, or by calling it with an argv.

    Example:
        >>> gc.flags.DEFINE_integer("steps", 100, "training steps")
        >>> gc.flags.FLAGS(["train.py", "--steps=5", "--other"])
        ['train.py', '--other']
        >>> gc.flags.FLAGS.steps
        5
    """

    def __init__(self):
        object.__setattr__(self, "_flags", {})
        object.__setattr__(self, "_values", {})
        object.__setattr__(self, "_argv", None)  # the argv parsed, once parsed

    def define(self, flag):
        if flag.name in self._flags:
            raise DuplicateFlagError(f"flag --{flag.name} is defined twice",)
        self._flags[flag.name] = flag
        self._values[flag.name] = flag.convert(flag.default)
        if self._argv is not None:  # defined after parsing: its command-line value applies
            self._parse(self._argv, [flag])

    def __call__(self, argv, known_only=True):
        """Parse ``argv`` (program name first); returns the program name and the arguments
        no defined flag consumed.

        Raises:
            IllegalFlagValueError: a value a flag cannot take.
        """
        argv = list(argv)
        remaining = self._parse(argv, list(self._flags.values()))
        object.__setattr__(self, "_argv", argv)
        return remaining

    def _parse(self, argv, flags):
        cut = argv.index("--", 1) if "--" in argv[1:] else len(argv)
        parser = _Parser(add_help=False, allow_abbrev=False,
                         argument_default=argparse.SUPPRESS)
        for flag in flags:
            flag.add_to(parser)
        bools = {f.name: f for f in flags if f.kind == "bool"}
        try:
            found, rest = parser.parse_known_args([_bool_token(t, bools)
                                                   for t in argv[1:cut]])
        except _ParserError as e:
            raise IllegalFlagValueError(f"flags: {e}") from None
        for name, text in vars(found).items():
            self._values[name] = self._flags[name].convert(text)
        return argv[:1] + rest + argv[cut:]

    def _ensure_parsed(self):
        if self._argv is None:
            self(sys.argv)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name not in self._flags:
            raise AttributeError(f"no flag named {name!r}; define it with "
                                 f"gc.flags.DEFINE_...({name!r}, default, help)")
        self._ensure_parsed()
        return self._values[name]

    def __setattr__(self, name, value):
        if name not in self._flags:
            raise AttributeError(f"no flag named {name!r} to set")
        self._values[name] = value

    def __contains__(self, name):
        return name in self._flags

    def __iter__(self):
        return iter(self._flags)

    def is_parsed(self):
        return self._argv is not None

    def mark_as_parsed(self):
        object.__setattr__(self, "_argv", [sys.argv[0] if sys.argv else ""])

    def unparse_flags(self):
        """Forget parsed values: defaults again, parsed anew on the next read."""
        for name, flag in self._flags.items():
            self._values[name] = flag.convert(flag.default)
        object.__setattr__(self, "_argv", None)

    def flag_values_dict(self):
        self._ensure_parsed()
        return dict(self._values)

    def help_text(self):
        """One line per flag: name, kind, help, default."""
        lines = []
        for flag in self._flags.values():
            lines.append(f"  --{flag.name}: {flag.help or ''}\n    ({flag.kind}, default: "
                         f"{flag.default!r})")
        return "\n".join(lines)


FLAGS = FlagValues()


def _definer(kind, parse):
    def define(name, default, help=None, flag_values=FLAGS, short_name=None,  # noqa: A002
               lower_bound=None, upper_bound=None, **unused):
        def check(value):
            if lower_bound is not None and value < lower_bound:
                return f"must be >= {lower_bound}"
            if upper_bound is not None and value > upper_bound:
                return f"must be <= {upper_bound}"
            return None
        flag_values.define(_Flag(name, default, help, kind, parse, short_name, check))
    define.__name__ = f"DEFINE_{kind}"
    define.__doc__ = (f"Define ``--name`` as a {kind} flag with ``default`` (readable as "
                      f"``FLAGS.name``).")
    return define


def DEFINE_list(name, default, help=None, flag_values=FLAGS, **unused):  # noqa: A002
    """Define ``--name=a,b,c``: a list of strings (``default`` a list or a comma string)."""
    flag_values.define(_Flag(name, default, help, "comma-separated list",
                             lambda text: [s.strip() for s in text.split(",") if s.strip()],
                             unused.get("short_name")))


def DEFINE_enum(name, default, enum_values, help=None, flag_values=FLAGS,  # noqa: A002
                **unused):
    """Define ``--name`` whose value must be one of ``enum_values``."""
    choices = list(enum_values)
    flag_values.define(_Flag(name, default, help, f"one of {choices}", str,
                             unused.get("short_name"),
                             lambda v: None if v in choices else f"must be one of {choices}"))


flags = types.ModuleType("graphc.flags", "TF1's tf.flags (tf.app.flags), on argparse.")
flags.__dict__.update(
    FLAGS=FLAGS, FlagValues=FlagValues, DEFINE_string=_definer("string", str),
    DEFINE_integer=_definer("integer", int), DEFINE_float=_definer("float", float),
    DEFINE_boolean=_definer("bool", _parse_bool), DEFINE_list=DEFINE_list,
    DEFINE_enum=DEFINE_enum, DuplicateFlagError=DuplicateFlagError,
    IllegalFlagValueError=IllegalFlagValueError)
flags.DEFINE_bool = flags.DEFINE_boolean


# -- tf.app ----------------------------------------------------------------------------------

_HELP = ("-h", "--help", "--helpshort", "--helpfull")


def run(main=None, argv=None):
    """Parse the flags from ``argv`` (default ``sys.argv``), call ``main(remaining_argv)``
    and exit with its return value, as TF1's ``tf.app.run``.

    Args:
        main: the function to run; default: the ``main`` of the ``__main__`` module.
        argv: the command line, program name first.
    Raises:
        SystemExit: always: ``main``'s return value; 1 for a bad flag value (the error is
            printed); 0 after ``--help`` prints the flags.
    Example:
        >>> if __name__ == "__main__":
        ...     gc.app.run()          # calls main(argv) with the flags parsed
    """
    argv = list(sys.argv if argv is None else argv)
    head = argv[:argv.index("--")] if "--" in argv else argv
    if any(a in _HELP for a in head[1:]):
        print(f"usage: {argv[0] if argv else 'main'} [flags]\n\nflags:\n{FLAGS.help_text()}")
        sys.exit(0)
    try:
        remaining = FLAGS(argv)
    except IllegalFlagValueError as e:
        print(f"FATAL Flags parsing error: {e}\nPass --help to see the flags.", file=sys.stderr)
        sys.exit(1)
    main = main if main is not None else sys.modules["__main__"].main
    sys.exit(main(remaining))


app = types.ModuleType("graphc.app", "TF1's tf.app: run() and flags.")
app.run, app.flags = run, flags
