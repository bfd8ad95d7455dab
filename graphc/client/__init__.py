"""Running graphs: Session, ``gc.compile``, the compile pipeline, saving steps ahead of
time and the dumps. Imports the compiler; ``graphc.runtime`` alone runs saved steps."""
