"""TF1's sampled losses for large vocabularies: ``nn.nce_loss`` and
``nn.sampled_softmax_loss`` (word2vec, language models), and the log-uniform (Zipfian)
candidate sampler they draw from, ``nn.log_uniform_candidate_sampler``.

Each loss scores the true classes and ``num_sampled`` drawn classes only (a ``gather`` of
their rows of ``weights`` and ``biases`` and a ``matmul``), with TF1's correction of each
logit by ``log`` of the class's expected count. Everything runs inside the step: the draw is
new each run, and the gradients reach ``weights``, ``biases`` and ``inputs`` through the
gathers (a scatter-add into the rows used).

One difference from TF1: the default sampler draws with replacement (``unique=False``), so
a class's expected count is ``num_sampled * P(class)`` exactly; TF1's default draws distinct
classes by rejection, a count of draws known only at run time. Pass ``sampled_values`` to use
candidates of your own.
"""
import numpy as np

from ..errors import GraphError, ShapeError
from ..ir import dtypes as D
from ..ir.ops import convert
from ..ir.source import user_location
from .math_ops import (cast, concat, equal, exp, floor, gather, log, matmul, minimum,
                       random_uniform, reshape, stop_gradient, where, zeros_like)
from .nn_impl import sigmoid_cross_entropy_with_logits, softmax_cross_entropy_with_logits_v2
from .reduction_ops import reduce_sum


def log_uniform_candidate_sampler(true_classes, num_true, num_sampled, unique, range_max,
                                  seed=None, name=None):
    """``num_sampled`` classes of ``[0, range_max)`` drawn with ``P(k) = log((k + 2) /
    (k + 1)) / log(range_max + 1)`` (frequent words first, as word2vec sorts them).

    Args:
        true_classes: [batch, num_true] int64 labels (their expected counts are returned).
        num_true, num_sampled, range_max: Python ints.
        unique: must be False (see the module docstring).
    Returns:
        (sampled_candidates int64 [num_sampled], true_expected_count [batch, num_true],
        sampled_expected_count [num_sampled]), float32 counts, as TF1.
    Raises:
        GraphError: ``unique=True``.
    Example:
        >>> sampled = gc.nn.log_uniform_candidate_sampler(labels, 1, 64, False, 50000)
    """
    if unique:
        raise GraphError("log_uniform_candidate_sampler: unique=True draws a number of times "
                         "known only at run time", loc=user_location(),
                         hint="pass unique=False (draws with replacement; expected counts "
                              "num_sampled * P(class))")
    log_range = float(np.log(range_max + 1.0))
    u = random_uniform([int(num_sampled)], dtype=D.float64, seed=seed)
    k = minimum(floor(exp(u * log_range)) - 1.0, float(range_max - 1))
    sampled = cast(k, D.int64)

    def expected(classes):
        c = cast(classes, D.float64)
        p = (log(c + 2.0) - log(c + 1.0)) / log_range
        return cast(p * float(num_sampled), D.float32)

    return (stop_gradient(sampled), stop_gradient(expected(convert(true_classes))),
            stop_gradient(expected(sampled)))


def _sampled_logits(fn, weights, biases, labels, inputs, num_sampled, num_classes, num_true,
                    sampled_values, remove_accidental_hits, seed):
    """(logits [batch, num_true + num_sampled], labels of the same shape): the true classes'
    logits first, each less log of its expected count."""
    if isinstance(weights, (list, tuple)):
        if len(weights) != 1:
            raise GraphError(f"{fn}: sharded weights are not supported; pass one "
                             f"[num_classes, dim] tensor", loc=user_location())
        weights = weights[0]
    inputs, weights = convert(inputs), convert(weights)
    biases = convert(biases, weights)
    labels = cast(convert(labels), D.int64)
    if labels.shape is None or len(labels.shape) != 2 or labels.shape[1] != num_true:
        raise ShapeError(f"{fn}: labels must be [batch, num_true={num_true}], found "
                         f"{labels.describe()} : {labels.type_str()}", loc=user_location())
    if sampled_values is None:
        sampled_values = log_uniform_candidate_sampler(labels, num_true, num_sampled, False,
                                                       num_classes, seed=seed)
    sampled, true_count, sampled_count = (convert(v) for v in sampled_values)
    sampled = cast(sampled, D.int64)
    dt = inputs.dtype
    # true logits: <inputs, w[label]> + b[label], for each of the num_true labels
    true_w = gather(weights, labels)                                  # [batch, num_true, dim]
    true_logits = reduce_sum(true_w * reshape(inputs, [-1, 1, inputs.shape[-1]]), axis=-1)
    true_logits = true_logits + gather(biases, labels) - log(cast(true_count, dt))
    # sampled logits: inputs @ w[sampled]^T + b[sampled]
    sampled_logits = matmul(inputs, gather(weights, sampled), transpose_b=True)
    sampled_logits = sampled_logits + gather(biases, sampled) - log(cast(sampled_count, dt))
    if remove_accidental_hits:   # a sampled class that is a true label scores nothing
        hits = reduce_sum(cast(equal(reshape(labels, [-1, num_true, 1]),
                                     reshape(sampled, [1, 1, -1])), dt), axis=1)
        sampled_logits = where(hits > 0.0, zeros_like(sampled_logits) - 1e30, sampled_logits)
    logits = concat([true_logits, sampled_logits], axis=1)
    targets = concat([zeros_like(true_logits) + 1.0 / num_true, zeros_like(sampled_logits)],
                     axis=1)
    return logits, targets


def nce_loss(weights, biases, labels, inputs, num_sampled, num_classes, num_true=1,
             sampled_values=None, remove_accidental_hits=False, partition_strategy="mod",
             name="nce_loss", seed=None):
    """Noise-contrastive estimation (TF1's ``tf.nn.nce_loss``): per example, the sigmoid
    cross-entropy of the true classes against 1 (each ``1 / num_true``) and of
    ``num_sampled`` drawn classes against 0, summed.

    Args:
        weights: [num_classes, dim]; biases: [num_classes]; labels: [batch, num_true]
            integers; inputs: [batch, dim].
        num_sampled, num_classes, num_true: Python ints.
        sampled_values: (candidates, true_expected_count, sampled_expected_count), else
            drawn by ``log_uniform_candidate_sampler`` (with replacement).
    Returns:
        [batch] losses (average them for the training loss, as TF1 code does).
    Example:
        >>> loss = gc.reduce_mean(gc.nn.nce_loss(nce_w, nce_b, labels, embed, 64, vocab))
    """
    logits, targets = _sampled_logits("nce_loss", weights, biases, labels, inputs,
                                      num_sampled, num_classes, num_true, sampled_values,
                                      remove_accidental_hits, seed)
    return reduce_sum(sigmoid_cross_entropy_with_logits(labels=targets, logits=logits),
                      axis=1)


def sampled_softmax_loss(weights, biases, labels, inputs, num_sampled, num_classes,
                         num_true=1, sampled_values=None, remove_accidental_hits=True,
                         partition_strategy="mod", name="sampled_softmax_loss", seed=None):
    """The softmax cross-entropy over the true classes and ``num_sampled`` drawn classes
    only (TF1's ``tf.nn.sampled_softmax_loss``; a sampled class equal to a true label is
    removed by default).

    Args:
        as ``nce_loss``.
    Returns:
        [batch] losses.
    Example:
        >>> loss = gc.reduce_mean(gc.nn.sampled_softmax_loss(w, b, labels, h, 512, vocab))
    """
    logits, targets = _sampled_logits("sampled_softmax_loss", weights, biases, labels, inputs,
                                      num_sampled, num_classes, num_true, sampled_values,
                                      remove_accidental_hits, seed)
    return softmax_cross_entropy_with_logits_v2(labels=stop_gradient(targets), logits=logits)
