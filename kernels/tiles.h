/* Tiling shared by the SIMD kernel files. A file provides tile bodies
 * body(type, R, T, n, w, row_bytes, act, act_bytes, out, out_stride) that
 * compute an R x T block of outputs (R <= TILE_R weight rows, T <= TILE_T
 * tokens); KERNELS() turns one into the file's vec_dot and mul_rows. */
#ifndef G4_TILES_H
#define G4_TILES_H

#include <stddef.h>
#include <stdint.h>

/* The tile bodies take their type and shape as constants; forcing them
 * inline and unrolling their short loops gives one specialised loop nest
 * per (type, shape) whose accumulators live in registers. */
#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")
/* A file may pick its own tile shape before including this header. */
#ifndef TILE_R
#define TILE_R 4
#endif
#ifndef TILE_T
#define TILE_T 2
#endif

typedef void tile_fn(int64_t n, const uint8_t *w, size_t row_bytes, const uint8_t *act, size_t act_bytes, float *out,
                     int64_t out_stride);

/* Covers n_rows x n_tok with full tiles where they fit, single rows and
 * tokens at the edges; tiles[full rows][full tokens]. Rows outside, so a
 * row group stays in L1 while the tokens pass. */
static inline void cover(tile_fn *const tiles[2][2], int64_t n, const void *vw, size_t row_bytes, int64_t n_rows,
                         const void *vact, size_t act_bytes, int64_t n_tok, float *out, int64_t out_stride) {
    const uint8_t *w = vw, *act = vact;
    for (int64_t r = 0; r < n_rows;) {
        const int full_r = n_rows - r >= TILE_R;
        for (int64_t t = 0; t < n_tok;) {
            const int full_t = n_tok - t >= TILE_T;
            tiles[full_r][full_t](n, w + r * row_bytes, row_bytes, act + t * act_bytes, act_bytes,
                                  out + t * out_stride + r, out_stride);
            t += full_t ? TILE_T : 1;
        }
        r += full_r ? TILE_R : 1;
    }
}

/* The four tile shapes of one type, its mul_rows and its vec_dot. */
#define KERNELS(name, body, type)                                                                                    \
    static void name##_r1t1(int64_t n, const uint8_t *w, size_t rb, const uint8_t *a, size_t ab, float *o, int64_t os) { \
        body(type, 1, 1, n, w, rb, a, ab, o, os);                                                                    \
    }                                                                                                                \
    static void name##_r1tT(int64_t n, const uint8_t *w, size_t rb, const uint8_t *a, size_t ab, float *o, int64_t os) { \
        body(type, 1, TILE_T, n, w, rb, a, ab, o, os);                                                               \
    }                                                                                                                \
    static void name##_rRt1(int64_t n, const uint8_t *w, size_t rb, const uint8_t *a, size_t ab, float *o, int64_t os) { \
        body(type, TILE_R, 1, n, w, rb, a, ab, o, os);                                                               \
    }                                                                                                                \
    static void name##_rRtT(int64_t n, const uint8_t *w, size_t rb, const uint8_t *a, size_t ab, float *o, int64_t os) { \
        body(type, TILE_R, TILE_T, n, w, rb, a, ab, o, os);                                                          \
    }                                                                                                                \
    static void name##_rows(int64_t n, const void *w, size_t rb, int64_t nr, const void *a, size_t ab, int64_t nt,    \
                            float *o, int64_t os) {                                                                  \
        static tile_fn *const tiles[2][2] = {{name##_r1t1, name##_r1tT}, {name##_rRt1, name##_rRtT}};                \
        cover(tiles, n, w, rb, nr, a, ab, nt, o, os);                                                                \
    }                                                                                                                \
    static float name##_dot(int64_t n, const void *w, const void *a) {                                               \
        float y;                                                                                                     \
        name##_r1t1(n, w, 0, a, 0, &y, 0);                                                                           \
        return y;                                                                                                    \
    }

#endif
