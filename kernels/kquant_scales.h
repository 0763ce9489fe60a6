/* The 6-bit sub-block scales and mins of Q4_K and Q5_K: 8 (scale, min) pairs
 * packed into 12 bytes. Pairs 0-3 sit in the low 6 bits of bytes 0-3 (scale)
 * and 4-7 (min); pairs 4-7 keep their low 4 bits in the two nibbles of bytes
 * 8-11 and their top 2 bits in the otherwise unused bits 6-7 of bytes 0-7. */
#ifndef G4_KQUANT_SCALES_H
#define G4_KQUANT_SCALES_H

#include <stdint.h>

static inline void g4_kquant_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

#endif
