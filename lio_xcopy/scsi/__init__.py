"""Wire formats (SPC-4, SBC-4, SSC-4, SMC-3): pure functions and dataclasses, no I/O."""
