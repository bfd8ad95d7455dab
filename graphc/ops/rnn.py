"""Recurrent networks, unrolled: TF1's RNN cells, ``static_rnn``, ``dynamic_rnn`` (for a
time dimension known when the step is compiled) and their bidirectional forms.

Unrolling writes one copy of the cell's ops per time step, all reading the SAME weight
variables; the autodiff driver sums the fan-out, so backpropagation through time needs no
code of its own: a weight's gradient is the sum of its T per-step contributions.

Cells follow TF1's variable layouts: one ``kernel`` of shape [input + units, gates * units]
applied to ``concat([x, h], 1)``, and a ``bias``. BasicLSTMCell / LSTMCell gates are ordered
(i, j, f, o) — input gate, candidate, forget gate, output gate — with ``forget_bias`` added
to f; GRUCell has ``gates/kernel`` (r, u; bias initialized to 1) and ``candidate/kernel``.
Variables are created on a cell's first call (named ``rnn/basic_lstm_cell/kernel`` inside
``static_rnn``) and listed by ``gc.trainable_variables()``.

``sequence_length`` (an int vector [batch]) masks the steps past each sequence's end, as TF1
does: outputs there are zeros and the state is copied through, so the final state is the
state after each sequence's last real step, and padded steps get no gradient.

Example:
    >>> cell = gc.nn.rnn_cell.BasicLSTMCell(32)
    >>> outputs, state = gc.nn.static_rnn(cell, gc.unstack(x, axis=1), dtype=gc.float32)
"""
import collections

from ..errors import GraphError
from ..framework.graph import Variable, name_scope
from ..framework.nest import flatten, map_structure  # noqa: F401  (flatten: gc.nn.rnn_cell users)
from .init_ops import constant as constant_init
from .init_ops import glorot_uniform, zeros as zeros_init
from ..ir import dtypes as D
from ..ir.graph import Node
from ..ir.ops import apply, const_node
from ..ir.source import user_location
from .array_ops import specialization_value
from .clip_ops import clip_by_value
from .math_ops import (concat, expand_dims, matmul, one_hot, sigmoid, stack, tanh, unstack,
                       where, zeros_like)
from .math_ops import range as gc_range
from .functional_ops import loop_over
from .nn_ops import dropout


class LSTMStateTuple(collections.namedtuple("LSTMStateTuple", ("c", "h"))):
    """An LSTM state: cell ``c`` and hidden ``h`` (TF1's tf.nn.rnn_cell.LSTMStateTuple)."""

    __slots__ = ()

    @property
    def dtype(self):
        return self.c.dtype


# -- batch-sized zeros -----------------------------------------------------------------------------
def _batch_column(like):
    """A [batch, 1] tensor of ``like`` (its leading dim), for shaping zeros with a batch
    dim known only when the step is specialized."""
    spec = (("s", None, None, None),) + (("s", 0, 1, None),) + (("i", 0),) * (like.rank - 2)
    if like.rank == 1:
        return expand_dims(like, 1)
    return apply("strided_slice", [like], {"spec": spec})


def _batch_like(batch_size):
    """``batch_size`` as an int, or a scalar int tensor known when the step is specialized
    (``gc.shape(x)[0]``, ``gc.size(y) // 3``...)."""
    if not isinstance(batch_size, Node):
        return int(batch_size)
    batch, known = specialization_value("zero_state", "batch_size", batch_size)
    if batch.shape != () or not batch.dtype.is_integer:
        raise GraphError(f"zero_state: batch_size must be an int or a scalar int tensor, found "
                         f"{batch.describe()} {batch.type_str()}", loc=user_location(),
                         hint="pass gc.shape(x)[0] for the batch size of x")
    return batch if known is None else int(known)


def _zeros(batch, size, dtype):
    """Zeros [batch, size]: ``batch`` an int, a scalar tensor known when the step is
    specialized, or a [batch, 1] tensor whose leading dim it is."""
    zero = const_node(D.as_dtype(dtype).np.type(0), dtype)
    if isinstance(batch, int) or batch.shape == ():
        return apply("broadcast_to", [zero], {"shape": [batch, size]})
    return apply("broadcast_like", [apply("broadcast_to", [zero], {"shape": (1, size)}), batch])


# -- cells ----------------------------------------------------------------------------------------
class RNNCell:
    """Base class (TF1's tf.nn.rnn_cell.RNNCell): ``output, new_state = cell(x, state)``.

    Subclasses set ``default_name`` (and ``state_size`` / ``output_size`` when they are not
    ``num_units``) and implement
    ``build(input_depth, dtype)`` (create variables with ``add_variable``) and
    ``call(inputs, state)``.
    """

    default_name = "rnn_cell"

    def __init__(self, num_units, activation=None, reuse=None, name=None, dtype=None,
                 kernel_initializer=None, bias_initializer=None):
        self.num_units = int(num_units)
        self.activation = activation or tanh
        self.name = name or self.default_name
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self._variables = []
        self.built = False

    def __call__(self, inputs, state, scope=None):
        if not self.built:
            if inputs.shape[-1] is None:
                raise GraphError(f"{type(self).__name__}: the input depth (last dim of "
                                 f"{inputs.type_str()}) must be known")
            with name_scope(scope or self.name):
                self.build(inputs.shape[-1], inputs.dtype)
            self.built = True
        with name_scope(scope or self.name):
            return self.call(inputs, state)

    def add_variable(self, name, shape, dtype, initializer=None):
        init = initializer or glorot_uniform()
        var = Variable(init(shape, dtype), name=name, dtype=dtype)
        self._variables.append(var)
        return var

    def _kernel_and_bias(self, input_depth, dtype, gates, bias_init=None, prefix=""):
        kernel = self.add_variable(prefix + "kernel",
                                   [input_depth + self.num_units, gates * self.num_units],
                                   dtype, self.kernel_initializer)
        bias = self.add_variable(prefix + "bias", [gates * self.num_units], dtype,
                                 self.bias_initializer or bias_init or zeros_init())
        return kernel, bias

    @property
    def state_size(self):
        return self.num_units

    @property
    def output_size(self):
        return self.num_units

    @property
    def variables(self):
        return list(self._variables)

    trainable_variables = trainable_weights = weights = variables

    def zero_state(self, batch_size, dtype):
        """Zeros of ``state_size`` for ``batch_size`` (an int or ``gc.shape(x)[0]``)."""
        batch = _batch_like(batch_size)
        return map_structure(lambda size: _zeros(batch, size, dtype), self.state_size)

    def _gates(self, x, h, kernel, bias, count):
        """``concat([x, h]) @ kernel + bias`` split into ``count`` blocks of num_units."""
        z = matmul(concat([x, h], 1), kernel) + bias
        u = self.num_units
        if count == 1:
            return [z]  # the whole of z: no slice (a copy, and its gradient, per time step)
        return [z[:, k * u:(k + 1) * u] for k in range(count)]


class BasicRNNCell(RNNCell):
    """``h' = activation(concat([x, h]) @ kernel + bias)`` (tanh by default); output = h'."""

    default_name = "basic_rnn_cell"

    def build(self, input_depth, dtype):
        self.kernel, self.bias = self._kernel_and_bias(input_depth, dtype, 1)

    def call(self, inputs, state):
        (z,) = self._gates(inputs, state, self.kernel, self.bias, 1)
        out = self.activation(z)
        return out, out


class BasicLSTMCell(RNNCell):
    """TF1's BasicLSTMCell: gates (i, j, f, o) from one kernel; state LSTMStateTuple(c, h).

    ``c' = c * sigmoid(f + forget_bias) + sigmoid(i) * tanh(j)``, ``h' = tanh(c') sigmoid(o)``.
    """

    default_name = "basic_lstm_cell"

    def __init__(self, num_units, forget_bias=1.0, state_is_tuple=True, activation=None,
                 reuse=None, name=None, dtype=None, **kw):
        super().__init__(num_units, activation, reuse, name, dtype, **kw)
        self.forget_bias = float(forget_bias)
        self.state_is_tuple = state_is_tuple

    @property
    def state_size(self):
        u = self.num_units
        return LSTMStateTuple(u, u) if self.state_is_tuple else 2 * u

    def build(self, input_depth, dtype):
        self.kernel, self.bias = self._kernel_and_bias(input_depth, dtype, 4)

    def _split_state(self, state):
        if self.state_is_tuple:
            return state
        u = self.num_units
        return state[:, :u], state[:, u:]

    def _pack_state(self, c, h):
        return LSTMStateTuple(c, h) if self.state_is_tuple else concat([c, h], 1)

    def call(self, inputs, state):
        c, h = self._split_state(state)
        i, j, f, o = self._gates(inputs, h, self.kernel, self.bias, 4)
        new_c = c * sigmoid(f + self.forget_bias) + sigmoid(i) * self.activation(j)
        new_h = self.activation(new_c) * sigmoid(o)
        return new_h, self._pack_state(new_c, new_h)


class LSTMCell(BasicLSTMCell):
    """TF1's LSTMCell: BasicLSTMCell plus optional peepholes (diagonal ``w_i_diag``,
    ``w_f_diag``, ``w_o_diag``), ``cell_clip``, and a projection ``num_proj`` of the output
    (``projection/kernel``, then ``proj_clip``); state LSTMStateTuple(c, m)."""

    default_name = "lstm_cell"

    def __init__(self, num_units, use_peepholes=False, cell_clip=None, initializer=None,
                 num_proj=None, proj_clip=None, forget_bias=1.0, state_is_tuple=True,
                 activation=None, reuse=None, name=None, dtype=None, **kw):
        kw.setdefault("kernel_initializer", initializer)
        super().__init__(num_units, forget_bias, state_is_tuple, activation, reuse, name,
                         dtype, **kw)
        self.use_peepholes, self.cell_clip = use_peepholes, cell_clip
        self.num_proj, self.proj_clip = num_proj, proj_clip

    @property
    def state_size(self):
        m = self.num_proj or self.num_units
        return LSTMStateTuple(self.num_units, m) if self.state_is_tuple else self.num_units + m

    @property
    def output_size(self):
        return self.num_proj or self.num_units

    def build(self, input_depth, dtype):
        u, m = self.num_units, self.num_proj or self.num_units
        self.kernel = self.add_variable("kernel", [input_depth + m, 4 * u], dtype,
                                        self.kernel_initializer)
        self.bias = self.add_variable("bias", [4 * u], dtype,
                                      self.bias_initializer or zeros_init())
        if self.use_peepholes:
            self.peepholes = [self.add_variable(f"w_{g}_diag", [u], dtype,
                                                self.kernel_initializer)
                              for g in ("f", "i", "o")]
        if self.num_proj:
            with name_scope("projection"):
                self.proj_kernel = self.add_variable("kernel", [u, self.num_proj], dtype,
                                                     self.kernel_initializer)

    def call(self, inputs, state):
        c, m = self._split_state(state)
        i, j, f, o = self._gates(inputs, m, self.kernel, self.bias, 4)
        if self.use_peepholes:
            wf, wi, wo = self.peepholes
            f, i = f + wf * c, i + wi * c
        new_c = sigmoid(f + self.forget_bias) * c + sigmoid(i) * self.activation(j)
        if self.cell_clip is not None:
            new_c = clip_by_value(new_c, -self.cell_clip, self.cell_clip)
        if self.use_peepholes:
            o = o + wo * new_c
        new_m = sigmoid(o) * self.activation(new_c)
        if self.num_proj:
            new_m = matmul(new_m, self.proj_kernel)
            if self.proj_clip is not None:
                new_m = clip_by_value(new_m, -self.proj_clip, self.proj_clip)
        return new_m, self._pack_state(new_c, new_m)


class GRUCell(RNNCell):
    """TF1's GRUCell: ``r, u = sigmoid(concat([x, h]) @ gates/kernel + gates/bias)`` (gate
    bias initialized to 1), ``c = tanh(concat([x, r * h]) @ candidate/kernel + bias)``,
    ``h' = u * h + (1 - u) * c``; output = h'."""

    default_name = "gru_cell"

    def build(self, input_depth, dtype):
        with name_scope("gates"):
            self.gate_kernel, self.gate_bias = self._kernel_and_bias(
                input_depth, dtype, 2, bias_init=constant_init(1.0))
        with name_scope("candidate"):
            self.candidate_kernel, self.candidate_bias = self._kernel_and_bias(
                input_depth, dtype, 1)

    def call(self, inputs, state):
        r, u = (sigmoid(g) for g in self._gates(inputs, state, self.gate_kernel,
                                                  self.gate_bias, 2))
        (z,) = self._gates(inputs, r * state, self.candidate_kernel, self.candidate_bias, 1)
        c = self.activation(z)
        new_h = u * state + (1.0 - u) * c
        return new_h, new_h


class MultiRNNCell(RNNCell):
    """Cells stacked in depth (TF1's MultiRNNCell): cell k reads cell k-1's output; the
    state is the tuple of their states."""

    default_name = "multi_rnn_cell"

    def __init__(self, cells, state_is_tuple=True):
        self.cells = list(cells)
        self.name = self.default_name
        self.built = True  # the cells build themselves

    @property
    def state_size(self):
        return tuple(c.state_size for c in self.cells)

    @property
    def output_size(self):
        return self.cells[-1].output_size

    @property
    def variables(self):
        return [v for c in self.cells for v in c.variables]

    def call(self, inputs, state):
        new_states = []
        for k, (cell, s) in enumerate(zip(self.cells, state)):
            with name_scope(f"cell_{k}"):
                inputs, s = cell(inputs, s)
            new_states.append(s)
        return inputs, tuple(new_states)


class DropoutWrapper(RNNCell):
    """Dropout on a cell's inputs, outputs and new state (TF1's DropoutWrapper; keep
    probabilities may be fed placeholders). Each step draws its own masks, fresh every run.

    As TF1's default state filter, state dropout spares an LSTMStateTuple's memory ``c`` and
    drops its ``h``; other states are dropped whole. Variational (per-sequence) masks are not
    supported.
    """

    def __init__(self, cell, input_keep_prob=1.0, output_keep_prob=1.0, state_keep_prob=1.0,
                 variational_recurrent=False, input_size=None, dtype=None, seed=None):
        if variational_recurrent:
            raise GraphError("DropoutWrapper: variational_recurrent=True is not supported",
                             hint="graphc draws a fresh mask at every time step")
        self.cell, self.seed, self._draws = cell, seed, 0
        self.input_keep_prob, self.output_keep_prob = input_keep_prob, output_keep_prob
        self.state_keep_prob = state_keep_prob
        self.name, self.built = cell.name, True

    def _seed(self):
        """A distinct seed per mask: equal op seeds would draw equal masks at every step."""
        self._draws += 1
        return None if self.seed is None else hash((self.seed, self._draws)) & 0x7FFFFFFF

    state_size = property(lambda self: self.cell.state_size)
    output_size = property(lambda self: self.cell.output_size)
    variables = property(lambda self: self.cell.variables)

    def __call__(self, inputs, state, scope=None):
        inputs = dropout(inputs, keep_prob=self.input_keep_prob, seed=self._seed())
        output, new_state = self.cell(inputs, state, scope)
        output = dropout(output, keep_prob=self.output_keep_prob, seed=self._seed())
        return output, self._drop_state(new_state)

    def _drop_state(self, state):
        if isinstance(state, LSTMStateTuple):
            return LSTMStateTuple(state.c, self._drop_state(state.h))
        if isinstance(state, (tuple, list)):
            return type(state)(self._drop_state(s) for s in state)
        return dropout(state, keep_prob=self.state_keep_prob, seed=self._seed())


# -- unrolling ------------------------------------------------------------------------------------
def _check_inputs(inputs, fn):
    if not isinstance(inputs, (list, tuple)) or not inputs:
        raise GraphError(f"{fn}: inputs must be a non-empty list of [batch, features] tensors",
                         hint="split a [batch, time, features] tensor with "
                              "gc.unstack(x, axis=1), or use dynamic_rnn")
    for t, x in enumerate(inputs):
        if not isinstance(x, Node) or x.rank != 2:
            raise GraphError(f"{fn}: input {t} must be a [batch, features] tensor, found "
                             f"{x.type_str() if isinstance(x, Node) else type(x).__name__}")
    return list(inputs)


def _mask_step(t, lengths, output, new_state, state):
    """Past a sequence's end (t >= length) the output is zero and the state carries over."""
    done = expand_dims(apply("less_equal", [lengths, t]), 1)  # [batch, 1]
    output = where(done, zeros_like(output), output)
    return output, map_structure(lambda new, old: where(done, old, new), new_state, state)


def _unroll(cell, inputs, initial_state, dtype, sequence_length):
    if initial_state is None:
        dtype = D.as_dtype(dtype) if dtype is not None else inputs[0].dtype
        initial_state = map_structure(lambda size: _zeros(_batch_column(inputs[0]), size, dtype),
                                      cell.state_size)
    state, outputs = initial_state, []
    for t, x in enumerate(inputs):
        output, new_state = cell(x, state)
        if sequence_length is not None:
            output, new_state = _mask_step(t, sequence_length, output, new_state, state)
        outputs.append(output)
        state = new_state
    return outputs, state


def _lengths(sequence_length):
    if sequence_length is None:
        return None
    lengths = sequence_length if isinstance(sequence_length, Node) else \
        const_node(sequence_length, D.int32)
    if not lengths.dtype.is_integer or lengths.rank != 1:
        raise GraphError(f"sequence_length must be an int vector [batch], found "
                         f"{lengths.type_str()}")
    return lengths


def static_rnn(cell, inputs, initial_state=None, dtype=None, sequence_length=None, scope=None):
    """Run ``cell`` over a list of T inputs [batch, features], unrolled (TF1's static_rnn).

    Args:
        cell: an RNNCell (its variables are created on the first step and shared by all).
        inputs: list of T tensors [batch, input_depth].
        initial_state: the cell's state structure, or None for zeros.
        dtype: dtype of the zero state (default: the inputs').
        sequence_length: int vector [batch]: steps at t >= length give zero outputs and
            keep the state (see module docstring).
        scope: name scope of the variables and ops ("rnn").
    Returns:
        (outputs: list of T tensors [batch, output_size], final state).
    Raises:
        GraphError: inputs not a list of 2-D tensors, or a bad sequence_length.
    Example:
        >>> outputs, state = gc.nn.static_rnn(gc.nn.rnn_cell.GRUCell(16), xs, dtype=gc.float32)
    """
    inputs = _check_inputs(inputs, "static_rnn")
    with name_scope(scope or "rnn"):
        return _unroll(cell, inputs, initial_state, dtype, _lengths(sequence_length))


def reverse_sequence(steps, lengths):
    """Reverse a list of [batch, d] steps, each sequence only within its length (TF's
    reverse_sequence): step t of example b becomes step length_b - 1 - t when t < length_b;
    later (padding) steps stay in place."""
    if lengths is None:
        return list(reversed(steps))
    count = len(steps)
    t = gc_range(count, dtype=lengths.dtype)
    end = expand_dims(lengths, 1)                               # [batch, 1]
    source = where(apply("less", [t, end]), end - 1 - t, t)
    select = one_hot(source, count, dtype=steps[0].dtype)       # [batch, T, T]
    return unstack(matmul(select, stack(steps, axis=1)), axis=1)


def static_bidirectional_rnn(cell_fw, cell_bw, inputs, initial_state_fw=None,
                             initial_state_bw=None, dtype=None, sequence_length=None,
                             scope=None):
    """A forward and a backward RNN over the same inputs (TF1's static_bidirectional_rnn).

    The backward cell reads each sequence reversed within its ``sequence_length``, and its
    outputs are reversed back, so step t pairs both directions' views of input t.

    Returns:
        (outputs: list of T tensors [batch, fw_size + bw_size], final fw state, final bw state).
    Example:
        >>> outs, fw, bw = gc.nn.static_bidirectional_rnn(cell_f, cell_b, xs, dtype=gc.float32)
    """
    inputs = _check_inputs(inputs, "static_bidirectional_rnn")
    lengths = _lengths(sequence_length)
    with name_scope(scope or "bidirectional_rnn"):
        with name_scope("fw"):
            fw_out, fw_state = _unroll(cell_fw, inputs, initial_state_fw, dtype, lengths)
        with name_scope("bw"):
            bw_out, bw_state = _unroll(cell_bw, reverse_sequence(inputs, lengths),
                                       initial_state_bw, dtype, lengths)
            bw_out = reverse_sequence(bw_out, lengths)
    outputs = [concat([f, b], 1) for f, b in zip(fw_out, bw_out)]
    return outputs, fw_state, bw_state


def _time_steps(inputs, time_major, fn):
    axis = 0 if time_major else 1
    if not isinstance(inputs, Node) or inputs.rank != 3:
        raise GraphError(f"{fn}: inputs must be a 3-D tensor "
                         f"[{'time, batch' if time_major else 'batch, time'}, features]")
    if inputs.shape[axis] is None:
        raise GraphError(f"{fn}: the time dimension of {inputs.type_str()} must be known when "
                         "the graph is built (graphc unrolls the loop)",
                         hint="give the placeholder a static time dim, e.g. [None, 20, 8]")
    return unstack(inputs, axis=axis), axis


def dynamic_rnn(cell, inputs, sequence_length=None, initial_state=None, dtype=None,
                parallel_iterations=None, swap_memory=False, time_major=False, scope=None):
    """TF1's dynamic_rnn: the cell runs in a loop over time (a ``loop`` node, see
    ``ir.loops``), built once whatever the sequence length, which may be known only when the
    step is fed. Backpropagation through time is the loop's adjoint: a backward loop over the
    saved states, accumulating the weights' gradients. A cell that draws random numbers
    (``DropoutWrapper``) is unrolled instead (TF1 draws fresh masks at every step); that needs
    a static time dimension.

    Args:
        inputs: [batch, time, features] (or [time, batch, features] when ``time_major``).
        sequence_length: int vector [batch]: steps at t >= length give zero outputs and keep
            the state (see module docstring); 0 and ``time`` are both fine.
        initial_state, dtype, scope: as ``static_rnn``.
    Returns:
        (outputs [batch, time, output_size] (time-major when asked), final state).
    Example:
        >>> outputs, state = gc.nn.dynamic_rnn(cell, x, sequence_length=lengths,
        ...                                    dtype=gc.float32)
    """
    with name_scope(scope or "rnn"):
        looped = _rnn_loop(cell, inputs, initial_state, dtype, _lengths(sequence_length),
                           time_major, False, "dynamic_rnn")
        if looped is not None:
            return looped
        steps, axis = _time_steps(inputs, time_major, "dynamic_rnn")
        outputs, state = _unroll(cell, steps, initial_state, dtype, _lengths(sequence_length))
    return stack(outputs, axis=axis), state


def _rnn_loop(cell, inputs, initial_state, dtype, lengths, time_major, reverse, fn):
    """``cell`` over the time axis of ``inputs`` as a loop node: (outputs, final state), or
    None when the cell has effects (random masks): the caller unrolls then."""
    if not isinstance(inputs, Node) or inputs.rank != 3:
        raise GraphError(f"{fn}: inputs must be a 3-D tensor "
                         f"[{'time, batch' if time_major else 'batch, time'}, features]")
    seq = inputs if time_major else apply("transpose", [inputs], {"perm": (1, 0, 2)})
    if initial_state is None:
        dtype = D.as_dtype(dtype) if dtype is not None else inputs.dtype
        first = apply("strided_slice", [seq], {"spec": (("i", 0),)}, name="first_step")
        initial_state = map_structure(lambda size: _zeros(_batch_column(first), size, dtype),
                                      cell.state_size)

    def step(state, x, t):
        output, new_state = cell(x, state)
        if lengths is not None:
            if lengths.dtype != t.dtype:
                t = apply("cast", [t], {"dtype": lengths.dtype})
            output, new_state = _mask_step(t, lengths, output, new_state, state)
        return new_state, output
    looped = loop_over(fn, "while", step, seq, initial_state, reverse, counter=True)
    if looped is None:
        return None
    state, outputs = looped
    if not time_major:
        outputs = apply("transpose", [outputs], {"perm": (1, 0, 2)})
    return outputs, state


def bidirectional_dynamic_rnn(cell_fw, cell_bw, inputs, sequence_length=None,
                              initial_state_fw=None, initial_state_bw=None, dtype=None,
                              parallel_iterations=None, swap_memory=False, time_major=False,
                              scope=None):
    """TF1's bidirectional_dynamic_rnn: ((out_fw, out_bw), (state_fw, state_bw)), outputs
    [batch, time, size] each (time-major when asked). Both directions are loops; the backward
    one visits t = time-1 ... 0 and, with ``sequence_length``, skips each example's padding
    first (its state stays initial there), which is TF1's reverse within each length."""
    lengths = _lengths(sequence_length)
    with name_scope(scope or "bidirectional_rnn"):
        with name_scope("fw"):
            fw = _rnn_loop(cell_fw, inputs, initial_state_fw, dtype, lengths, time_major, False,
                           "bidirectional_dynamic_rnn")
        with name_scope("bw"):
            bw = _rnn_loop(cell_bw, inputs, initial_state_bw, dtype, lengths, time_major, True,
                           "bidirectional_dynamic_rnn") if fw is not None else None
        if fw is not None and bw is not None:
            return (fw[0], bw[0]), (fw[1], bw[1])
        steps, axis = _time_steps(inputs, time_major, "bidirectional_dynamic_rnn")
        with name_scope("fw"):
            fw_out, fw_state = _unroll(cell_fw, steps, initial_state_fw, dtype, lengths)
        with name_scope("bw"):
            bw_out, bw_state = _unroll(cell_bw, reverse_sequence(steps, lengths),
                                       initial_state_bw, dtype, lengths)
    return ((stack(fw_out, axis=axis), stack(reverse_sequence(bw_out, lengths), axis=axis)),
            (fw_state, bw_state))


__all__ = ["LSTMStateTuple", "RNNCell", "BasicRNNCell", "BasicLSTMCell", "LSTMCell", "GRUCell",
           "MultiRNNCell", "DropoutWrapper", "static_rnn", "static_bidirectional_rnn",
           "dynamic_rnn", "bidirectional_dynamic_rnn", "reverse_sequence"]
