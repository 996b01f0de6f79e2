"""Names and defaults the CLI needs without importing torch: the evaluation protocol's (paper section 4), output dtypes."""

#: Interpolation baselines on the aligned grid, by ``arssr.degrade.resample`` method (``kspace``: zero filling).
BASELINES = {"nearest": "nearest", "trilinear": "linear", "cubic": "cubic", "lanczos": "lanczos", "kspace": "kspace"}
#: What ``--methods`` accepts besides weights files: the baselines, ANTs B-spline, and the shipped model.
METHODS = (*BASELINES, "bspline", "arssr")
DEFAULT_SCALES = (2.0, 2.5, 3.0, 3.5, 4.0)
DEFAULT_DEGRADATIONS = ("kspace", "cubic")
#: Output data types of written volumes; ``input`` keeps the source file's.
OUTPUT_DTYPES = ("float32", "float64", "int16", "uint16", "uint8", "input")
