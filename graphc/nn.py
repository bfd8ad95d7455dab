"""``gc.nn``: TF1's ``tf.nn`` namespace (activations, losses, convolutions and pooling,
normalization, recurrent networks), re-exported from the modules that implement them."""
from .ops import rnn as rnn_cell  # noqa: F401  (gc.nn.rnn_cell.BasicLSTMCell, ...)
from .ops.math_ops import sigmoid, tanh  # noqa: F401  (TF1 exposes them in nn too)
from .ops.nn_extra import (atrous_conv2d, crelu, depthwise_conv2d,  # noqa: F401
                           local_response_normalization, log_poisson_loss, lrn, selu,
                           separable_conv2d, swish, weighted_cross_entropy_with_logits)
from .ops.nn_impl import (bias_add, elu, in_top_k, l2_loss, l2_normalize,  # noqa: F401
                          leaky_relu, log_softmax, relu, relu6,
                          sigmoid_cross_entropy_with_logits, softmax,
                          softmax_cross_entropy_with_logits,
                          softmax_cross_entropy_with_logits_v2, softplus,
                          sparse_softmax_cross_entropy_with_logits, xw_plus_b)
from .ops.nn_ops import (avg_pool, avg_pool2d, batch_normalization, conv1d, conv2d,  # noqa
                         conv2d_transpose, dropout, embedding_lookup, fused_batch_norm,
                         max_pool, max_pool2d, moments)
from .ops.sampled_losses import (log_uniform_candidate_sampler, nce_loss,  # noqa: F401
                                 sampled_softmax_loss)
from .ops.sort_ops import top_k  # noqa: F401
from .ops.rnn import (BasicLSTMCell, BasicRNNCell, GRUCell, LSTMCell,  # noqa: F401
                      LSTMStateTuple, MultiRNNCell, bidirectional_dynamic_rnn, dynamic_rnn,
                      static_bidirectional_rnn, static_rnn)
