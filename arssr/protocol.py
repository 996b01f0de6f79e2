"""Names and defaults the CLI needs without importing torch: the evaluation protocol's (paper section 4),
the consistency options, the compressor's ``--auto`` factors and default SIREN time budget, and the output dtypes."""

#: Interpolation baselines on the aligned grid, by ``arssr.degrade.resample`` method (``kspace``: zero filling).
BASELINES = {"nearest": "nearest", "trilinear": "linear", "cubic": "cubic", "lanczos": "lanczos", "kspace": "kspace"}
#: What ``--methods`` accepts besides weights files: the baselines, ANTs B-spline, and the shipped model,
#: alone and projected onto the default consistency operator (``+dc``; ``+dc:OPERATOR`` for another).
METHODS = (*BASELINES, "bspline", "arssr", "arssr+dc")
DEFAULT_SCALES = (2.0, 2.5, 3.0, 3.5, 4.0)
DEFAULT_DEGRADATIONS = ("kspace", "cubic")

#: ``+dc:slice``: the slice model of thick-slice inputs along their slice axis (``evaluate --slice-thickness``).
SLICE_CONSISTENCY = "slice"

#: The degradation operators, each with the interpolation that a detail gain of 0 gives when it is the
#: consistency operator: its own, but cubic B-splines for a Gaussian blur (its matrix is no interpolation).
#: Their matrices are ``arssr.degrade.DEGRADATIONS`` (same names; tests/test_protocol.py checks the two agree).
DEGRADATION_INTERPOLATIONS = {"kspace": "kspace", "cubic": "cubic", "lanczos": "lanczos", "gaussian": "cubic"}
#: Consistency projections of an SR output (``arssr.consistency``): the degradations, or ``none``.
CONSISTENCY_OPERATORS = (*DEGRADATION_INTERPOLATIONS, "none")
#: k-space truncation, because that is what an MR acquisition at lower resolution is; measured in docs/history.md.
DEFAULT_CONSISTENCY = "kspace"

#: Scale of the network's detail over the consistent minimum-norm volume; ``auto`` fits it on the input
#: (measured in docs/history.md: above a gain of 1 inside the brain on Colin27 and the macaque template).
DEFAULT_GAIN = "auto"
#: What ``gain="auto"`` gives with ``cubic`` consistency (no thick slices), instead of a fit. Point sampling without
#: an anti-alias filter folds the input's spectrum, and self-examples sampled once more fitted gains of 0.66-1.13
#: where 0.25-0.5 was best (``arssr_rdn_v9``, cubic LR, macaque and Colin27, x2-x4; Lanczos and k-space LR fit
#: well); 0.25 had the best mean on the macaque (docs/history.md).
CUBIC_GAIN = 0.25
#: Slice profiles of a thick-slice input (``arssr.degrade.SliceModel``) and the slice axes ``evaluate`` simulates.
SLICE_PROFILES = ("boxcar", "gaussian")
#: How the consistency projection spreads a slice's residual along the slice axis (``arssr.consistency``):
#: ``orthogonal``, the least-squares correction (constant across each boxcar slice, so an error in a slice's
#: mean comes back as a step), or ``smooth``, interpolated linearly between the slice centres.
SLICE_CORRECTIONS = ("orthogonal", "smooth")
#: Chosen by the rule in eval/results/slice_correction/README.md: on the macaque (2 / 3 mm slices) 0.03 dB
#: below orthogonal in the mask (the rule allowed 0.05), on the clinical scans' slabs slice steps 2.08
#: against 2.32.
DEFAULT_SLICE_CORRECTION = "smooth"
#: How many mirrored copies of a thick-slice volume the plane prior restores, its estimate their mean
#: (``arssr.models.planes.through_plane``); 4 by the rule of eval/results/plane_prior/README.md.
PRIOR_MIRRORS = (1, 2, 4)
DEFAULT_PRIOR_MIRRORS = 4
SLICE_AXES = ("0", "1", "2", "all")

#: Downsampling factors that ``arssr compress --auto`` tries with each LR codec.
AUTO_SCALES = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
#: Seconds per SIREN fit that ``arssr compress`` allows when neither ``--steps`` nor ``--time-budget`` is given
#: (the library's ``time_budget=None`` means no limit): the shortest of 30, 60, 120 and 240 s whose PSNR is within
#: 0.3 dB of 240 s's on a 64^3 macaque patch at 0.775 bpp, one CPU thread (``eval/siren_time.py``,
#: docs/results/compress-speed.md).
SIREN_TIME_BUDGET = 240.0
#: Seconds per SIREN candidate of ``arssr compress --auto`` without ``--steps`` or ``--time-budget``: the setting
#: of every ``--auto`` record in docs/results (its six SIREN fits then take 3 of its minutes; at 0.02-0.1 bpp no
#: SIREN candidate came within 3 dB of the best SPERR one there).
AUTO_SIREN_TIME_BUDGET = 30.0

#: Output data types of written volumes; ``input`` keeps the source file's.
OUTPUT_DTYPES = ("float32", "float64", "int16", "uint16", "uint8", "input")
