/* Load-time interleaving of weight rows, so that decode (one token against a
 * few rows) reads one sequential stream instead of one stream per row.
 *
 * Layout: rows are taken in groups of 4; a group holds block 0 of its rows
 * 0..3, then block 1 of rows 0..3, and so on, so it occupies exactly the
 * bytes of its 4 plain rows and row r still starts its group at
 * r * row_bytes. The n_out % 4 tail rows follow in the plain layout. */
#ifndef G4_REPACK_H
#define G4_REPACK_H

#include "kernels.h"

/* Rows per interleaved group. (The model-facing g4_repack* calls are in
 * kernels.h.) */
#define G4_REPACK_ROWS 4

#endif
