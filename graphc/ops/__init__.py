"""The TF1 op functions, in modules named as TensorFlow names them (math_ops,
array_ops, nn_ops, control_flow_ops...). Each builds graph nodes from ``graphc.ir.ops``
declarations; the public namespaces (``graphc``, ``gc.nn``, ``gc.math``...) re-export them."""
