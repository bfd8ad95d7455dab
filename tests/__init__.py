"""graphc's tests, in folders mirroring the source tree; shared helpers in support/."""
