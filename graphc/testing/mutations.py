"""Known bugs, put back by monkeypatching, to prove the fuzzer catches them.

Each mutation is a context manager that patches one compiler function for the duration of
the block and restores it afterwards; nothing is patched at import, so normal runs never see
them. ``python -m graphc.testing.fuzz --mutate NAME`` runs the fuzzer under one.

- ``gemm_acc``: the LLVM GEMM-accumulation plan folds every matmul leaf of a fused sum into one
  shared buffer without proving the product occurs exactly once in the body
  (``gemm_acc.summable_args`` trusts every candidate): ``t + t + u`` then counts ``t``
  once.
- ``inplace_reader``: the in-place analysis ignores the other readers of the buffer it lets a
  node overwrite (``_State.readers`` finds none), so a later reader sees the new value.
- ``inplace_whole``: the in-place analysis lets a kernel overwrite a value it also reads whole
  at another input (``_reads_whole`` says no): ``h - h @ h`` written over h while its GEMM
  still reads h as a factor.
- ``transpose_flag``: the LLVM BLAS GEMM drops ``transpose_b`` when B is square (the shapes
  still fit, the values are wrong); the native GEMM copies B^T first and is unaffected, so
  only the ``llvm-blas`` configuration (``GRAPHC_NATIVE_GEMM=0``) can see it.
"""
import contextlib
import importlib


def _module(name):
    return importlib.import_module(f"graphc.{name}")


@contextlib.contextmanager
def _patched(obj, attr, value):
    old = getattr(obj, attr)
    setattr(obj, attr, value)
    try:
        yield
    finally:
        setattr(obj, attr, old)


def gemm_acc():
    acc = _module("codegen.llvm.kernels.gemm_acc")

    def trusting(body, tree, cands):  # every candidate leaf of the sum, occurrences unchecked
        return {e.value for e in acc._add_leaves(tree) if e.op == "arg" and e.value in cands}
    return _patched(acc, "summable_args", trusting)


def inplace_reader():
    inplace = _module("ir.passes.inplace")

    def no_readers(self, x, exclude=()):
        return [], self.value_class(x)
    return _patched(inplace._State, "readers", no_readers)


def inplace_whole():
    inplace = _module("ir.passes.inplace")
    return _patched(inplace, "_reads_whole", lambda n, destroyable, cls: False)


def transpose_flag():
    kernels = _module("codegen.llvm.kernels.elementwise")
    original = kernels.gemm_function

    def dropped(dtype, batch, strides, dims, flags, *rest, **kw):
        if flags[1] and dims[1] == dims[2]:  # square B: B^T read as B
            flags = (flags[0], False)
        return original(dtype, batch, strides, dims, flags, *rest, **kw)
    return _patched(kernels, "gemm_function", dropped)


MUTATIONS = {"gemm_acc": gemm_acc, "inplace_reader": inplace_reader,
             "inplace_whole": inplace_whole,
             "transpose_flag": transpose_flag}


def mutation(name):
    """The context manager putting back bug ``name`` (None: no mutation).

    Raises:
        KeyError: an unknown name (lists the known ones).
    Example:
        >>> with mutation("gemm_acc"):
        ...     failures, _ = check(recipes)
    """
    if name is None:
        return contextlib.nullcontext()
    if name not in MUTATIONS:
        raise KeyError(f"unknown mutation {name!r}; known: {', '.join(MUTATIONS)}")
    return MUTATIONS[name]()
