"""``gc.train``: optimizers whose updates are assign nodes inside the compiled step, TF1's
learning-rate schedules, the step counter, checkpoints (``Saver``, in graphc's format or
TensorFlow's, and TF1's checkpoint readers) and moving averages."""
from .checkpoint_utils import (CheckpointReader, NewCheckpointReader,  # noqa: F401
                               list_variables, load_checkpoint, load_variable)
from .learning_rate_decay import (cosine_decay, exponential_decay,  # noqa: F401
                                  inverse_time_decay, natural_exp_decay, piecewise_constant,
                                  polynomial_decay)
from .meta_graph import export_meta_graph, import_meta_graph  # noqa: F401
from .moving_averages import ExponentialMovingAverage  # noqa: F401
from .optimizers import (AdadeltaOptimizer, AdagradOptimizer, AdamOptimizer,  # noqa: F401
                         GradientDescentOptimizer, MomentumOptimizer, Optimizer,
                         RMSPropOptimizer)
from .saver import (CheckpointState, Saver, checkpoint_exists,  # noqa: F401
                    get_checkpoint_state, latest_checkpoint)
from .training_util import (create_global_step, get_global_step,  # noqa: F401
                            get_or_create_global_step, global_step)

from . import saver as _saver

_saver.META_GRAPH_EXPORT[:] = [export_meta_graph]  # Saver.save writes <prefix>.meta with it


def __getattr__(name):
    """TF1's queue runners and record protos: a clear error (the table is in graphc/__init__.py)."""
    from .. import missing_attribute
    raise missing_attribute(f"train.{name}", __name__, name)
