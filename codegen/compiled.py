"""What a backend's ``compile`` returns: the callable step and everything saving it needs.

Saving a step (``graphc.aot``) reads these fields; it never emits the code again.
"""
from dataclasses import dataclass, field


@dataclass
class CompiledCode:
    """One Program compiled by one backend.

    Attributes:
        backend: the backend's name ("numpy", "llvm").
        step: ``step(*feeds, *variables) -> (fetches, new variable values)``.
        source: the generated code as text, for dumps (the NumPy module; the LLVM IR as an
            ``llvm.backend.LLVMSource``, whose ``llvm_ir`` adds the optimized IR and assembly).
        rng_state: ``() -> the step's random state now`` (NumPy: each generator's
            ``bit_generator.state``; LLVM: the step counter and one key per random op).
        consts: the constant arrays the NumPy module indexes (LLVM: in ``layout.consts``).
        sites: ``(kind, node, detail)`` of each run-time check in the generated code.
        scratch_bytes: scratch preallocated beside the arena.
        stats: what the code generator did (LLVM: kernel calls, the folds that fired...).
        object_code: LLVM: the object file the step runs.
        layout: LLVM: the step's table of buffers (``runtime.llvm_step.StepLayout``).
    """
    backend: str
    step: object
    source: str
    rng_state: object = list
    consts: list = field(default_factory=list)
    sites: list = field(default_factory=list)
    scratch_bytes: int = 0
    stats: dict = field(default_factory=dict)
    object_code: bytes = None
    layout: object = None
