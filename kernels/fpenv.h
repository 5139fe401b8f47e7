/* fpenv.h: the floating-point environment the contract assumes
 * (docs/determinism.md section 2.1): round to nearest even, subnormals
 * honoured. The environment is per thread and inherited: a library built
 * with -ffast-math sets flush-to-zero and denormals-are-zero for the thread
 * that loads it (crtfastmath.o), and threads created after inherit them, so
 * opg sets its own around its work (the pool's threads, the runtime's entry
 * points) and gives the caller its environment back.
 *
 * opg_fpenv_enter saves the calling thread's state into *saved and sets the
 * contract's; opg_fpenv_leave restores what was saved. Nesting is fine. On
 * x86-64 it is MXCSR (the SSE/AVX arithmetic opg does): rounding, FTZ, DAZ
 * and the exception masks; elsewhere only the C rounding mode (a
 * flush-to-zero bit of another architecture, e.g. AArch64's FPCR.FZ, is not
 * set back). */
#ifndef OPG_FPENV_H
#define OPG_FPENV_H

#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>

/* MXCSR's control bits (all but the sticky flags 0-5): FTZ (15), rounding
 * (13-14) and DAZ (6) clear, every exception masked (7-12: an unmasked one
 * would trap on the inf and NaN that the contract lets through). */
#define OPG_MXCSR_CONTROL 0xFFC0u
#define OPG_MXCSR_CONTRACT 0x1F80u

typedef struct {
    unsigned int mxcsr;
} opg_fpenv;

static inline void opg_fpenv_enter(opg_fpenv *saved) {
    saved->mxcsr = _mm_getcsr();
    if ((saved->mxcsr & OPG_MXCSR_CONTROL) != OPG_MXCSR_CONTRACT)
        _mm_setcsr((saved->mxcsr & ~OPG_MXCSR_CONTROL) | OPG_MXCSR_CONTRACT);
}

static inline void opg_fpenv_leave(const opg_fpenv *saved) {
    if ((saved->mxcsr & OPG_MXCSR_CONTROL) != OPG_MXCSR_CONTRACT) _mm_setcsr(saved->mxcsr);
}
#else
#include <fenv.h>

typedef struct {
    int round;
} opg_fpenv;

static inline void opg_fpenv_enter(opg_fpenv *saved) {
    saved->round = fegetround();
    if (saved->round != FE_TONEAREST) fesetround(FE_TONEAREST);
}

static inline void opg_fpenv_leave(const opg_fpenv *saved) {
    if (saved->round != FE_TONEAREST) fesetround(saved->round);
}
#endif

#endif
