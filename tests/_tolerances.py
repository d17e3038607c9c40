"""The one tolerance table of the test suite, each number with its reason.

Errors are relative unless a name says otherwise:
``|got - ref| <= tol * max(1, |ref|)`` (an absolute floor of the same size for
values near 0), or ``np.testing.assert_allclose(..., rtol=tol)``. References
are independent oracles (NumPy/SciPy in float64, or an independent
transcription of the formula), so a tolerance bounds rounding and truncation,
never a shared mistake.
"""

import torch

# float64 against a float64 oracle: only the summation order and the LAPACK
# path differ; sums of O(100) terms of size O(1) agree to ~1e-13, so 1e-10
# leaves a margin of 1000 and still catches any wrong term.
RTOL64 = 1e-10
# float32 inputs against a float64 oracle on the same (rounded) data: a few
# hundred float32 roundings of 6e-8 each; well-conditioned inputs only (below).
RTOL32 = 1e-5
RTOL = {torch.float64: RTOL64, torch.float32: RTOL32}

# Absolute floor for float64 values that are exactly 0 mathematically (a loss at
# its minimum): rounding of O(100) terms of size O(1).
ATOL64 = 1e-12

# float32 reference tests use condition numbers <= 10: the float32 eigensolver's
# eigenvalue error is ~ n * eps32 * lambda_max, which is a relative error of
# n * eps32 * cond in the smallest eigenvalue and an absolute error of the same
# size in its logarithm (8 * 1.2e-7 * 10 = 1e-5 at the limit of RTOL32).
FLOAT32_MAX_COND = 10.0

# Gradients against an independent oracle (a Frechet-derivative block matrix
# through scipy's logm, accurate to ~1e-14 here, or a torch transcription of the
# closed form): one more level of cancellation than the value, relative to the
# largest entry.
GRAD_RTOL = 1e-9

# Central finite differences of a NumPy oracle with step h = 1e-6: truncation
# ~ h^2 |f'''| = 1e-12 and rounding ~ 1e-16 / h = 1e-10, so 1e-6 relative leaves
# a margin of 1e4 on inputs of size O(1).
FD_RTOL = 1e-6

# torch.autograd.gradcheck on the matrix functions (central differences with
# step 1e-6): rounding error ~1e-16 / 1e-6 = 1e-10 relative, truncation
# ~1e-12 |f'''|, so 1e-8 / 1e-6 (tighter than torch's defaults 1e-5 / 1e-3)
# leave a margin of 100 on well-conditioned float64 inputs.
GRADCHECK = dict(eps=1e-6, atol=1e-8, rtol=1e-6)
# gradcheck on the classic losses: their values reach O(100) (VICReg's weights
# are 25, Barlow Twins sums d^2 terms), so the rounding error of the finite
# differences is ~1e-16 * 100 / 1e-6 = 1e-8 absolute; 1e-7 leaves a margin of 10.
GRADCHECK_LOSSES = dict(eps=1e-6, atol=1e-7, rtol=1e-6)

# Under autocast the spectral block runs with autocast disabled, so results must
# be within the float32 row of float32 with autocast off.
AUTOCAST_RTOL = RTOL32

# Monte Carlo statements (paper Lemma C.1): every entry within 5 standard errors
# of its CLT distribution (two-sided probability 6e-7 per entry; at most 8 + 64
# entries, so a false failure has probability < 1e-4).
MC_SIGMAS = 5.0
# A printed statement of the paper "fails" when it misses by more than this
# relative amount, i.e. 10^8 times the tolerance it would need to hold.
FAILS_BY = 1e-2
# Half precision is computed in float32 and rounded once: the result must equal
# the float32 result on the same (rounded) input, cast back, exactly (the same
# code path in the same process, so no cross-build bit-equality is assumed).
