/* The paged KV cache: K and V rows of many sequences in fixed-size pages
 * drawn from one pool, with a page table per sequence.
 *
 * A page holds page_size consecutive positions of one sequence for every
 * layer of one kind that owns a cache: a sliding-window page for all sliding
 * layers, a global page for all full-attention layers (the two kinds have
 * different row widths and lifetimes). Pages are allocated as a sequence
 * grows. Global pages live as long as their positions; sliding pages are
 * recycled once the window has moved past them (plus one page of slack, so
 * that rewinding a few tokens stays cheap), so a sequence holds about
 * n_swa positions of sliding layers however long it gets.
 *
 * Sequences share pages copy-on-write: a fork references the source's pages,
 * and a page is copied only when one of its owners writes into it.
 *
 * Rewinding (truncate) needs the window before the new end. When those
 * sliding pages were already recycled, truncate falls back to the latest
 * checkpoint below the request (a checkpoint pins the window pages at a
 * sequence length), else to 0; the caller re-processes the tokens from there.
 *
 * A context shift (g4_kv_shift) drops a range of positions and moves the
 * later rows down in place, turning their keys to the new positions through
 * a callback (the cache knows no RoPE); docs/architecture.md §11.
 */
#ifndef G4_KVCACHE_H
#define G4_KVCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/formats.h"

enum { G4_KV_SWA = 0, G4_KV_FULL = 1, G4_KV_KINDS = 2 }; /* page kinds */
#define G4_KV_CHECKPOINTS 4 /* per sequence; a fifth drops the oldest */

typedef struct g4_kv_params {
    int32_t n_layer;
    const int32_t *width; /* per layer: values in a K (and a V) row; 0 = reads another layer's cache */
    const bool *swa;      /* per layer: sliding-window layer */
    int32_t n_swa;        /* window: a query sees itself and the n_swa-1 positions before it */
    int32_t page_size;    /* positions per page */
    enum g4_type type_k, type_v; /* F32, F16 or Q8_0 */
    int32_t n_seq;        /* sequence ids 0..n_seq-1 */
    int32_t n_ctx;        /* positions one sequence may hold */
    uint64_t max_bytes;   /* cap on page memory; 0 = none */
} g4_kv_params;

typedef struct g4_kv_cache g4_kv_cache;

typedef struct g4_kv_usage {
    int32_t pages_used[G4_KV_KINDS];      /* referenced by some sequence */
    int32_t pages_allocated[G4_KV_KINDS]; /* held by the pool: used + free for reuse */
    uint64_t page_bytes[G4_KV_KINDS];
    uint64_t bytes_used, bytes_allocated, max_bytes;
} g4_kv_usage;

/* "f32", "f16" or "q8_0" (the -ctk / -ctv names) -> the type; -1 otherwise. */
int g4_kv_type_from_name(const char *name, enum g4_type *type);
bool g4_kv_type_supported(enum g4_type type);

g4_kv_cache *g4_kv_new(const g4_kv_params *p, char *err);
void g4_kv_free(g4_kv_cache *kv);

/* The bytes of K and V one position takes in the layers of a kind. */
uint64_t g4_kv_bytes_per_token(const g4_kv_cache *kv, int kind);
/* Page bytes a single sequence of n_pos positions holds once a decode step
 * is done (no checkpoints, no sharing): the memory model of `gemma4 info`. */
uint64_t g4_kv_seq_bytes(const g4_kv_cache *kv, int64_t n_pos);
void g4_kv_usage_get(const g4_kv_cache *kv, g4_kv_usage *u);

int32_t g4_kv_len(const g4_kv_cache *kv, int32_t seq);
const int32_t *g4_kv_tokens(const g4_kv_cache *kv, int32_t seq); /* g4_kv_len of them */
int32_t g4_kv_n_ctx(const g4_kv_cache *kv);
int32_t g4_kv_n_seq(const g4_kv_cache *kv);

/* Makes positions [len, len+n) of seq writable: pages allocated, shared
 * pages copied. 0, or -1 with err set (memory cap, out of memory) and
 * nothing reserved. */
int g4_kv_reserve(g4_kv_cache *kv, int32_t seq, int32_t n, char *err);
/* Gives back what g4_kv_reserve took beyond the length (a failed batch). */
void g4_kv_unreserve(g4_kv_cache *kv, int32_t seq);
/* Stores one position's K and V rows of layer il (a reserved position). */
void g4_kv_store(g4_kv_cache *kv, int32_t seq, int32_t il, int32_t pos, const float *k, const float *v);
/* Raw rows (type_k for K, type_v for V) of layer il from position pos to the
 * end of its page: the row of pos, *n_rows (>= 1) rows stride bytes apart.
 * Values [g*hd, (g+1)*hd) of a row start g4_row_size(type, g*hd) bytes in. */
const void *g4_kv_rows(const g4_kv_cache *kv, int32_t seq, int32_t il, int32_t pos, bool v, int32_t *n_rows,
                       size_t *stride);
/* Appends n tokens whose rows were stored, then recycles the sliding pages
 * the window has left. */
void g4_kv_advance(g4_kv_cache *kv, int32_t seq, const int32_t *tokens, int32_t n);

/* Tokens at the start of seq equal to tokens[0..n). */
int32_t g4_kv_common_prefix(const g4_kv_cache *kv, int32_t seq, const int32_t *tokens, int32_t n);
/* Drops positions >= n_keep; returns the length kept, which is less than
 * n_keep when the window before n_keep was recycled (see above). */
int32_t g4_kv_truncate(g4_kv_cache *kv, int32_t seq, int32_t n_keep);
/* dst becomes a copy of src sharing its pages. 0, or -1 (out of memory). */
int g4_kv_fork(g4_kv_cache *kv, int32_t src, int32_t dst, char *err);
/* Pins the window at the current length of seq, so truncate can return to it. */
void g4_kv_checkpoint(g4_kv_cache *kv, int32_t seq);

/* Rotates the K row (the layer's width values, f32) of layer il cached for
 * position from so that it is the row for position to. */
typedef void (*g4_kv_rotate_fn)(void *user, int32_t il, float *k, int32_t from, int32_t to);
/* Context shift: keeps positions [0, n_keep), drops the n_discard after them
 * and moves the rest down by n_discard. A moved V row is copied as it is; a
 * moved K row is converted to f32, turned by rotate and converted back to
 * type_k. Shared pages are copied before they are written (the other
 * sequences keep their rows). Sliding layers: the rows the window of the
 * next token needs are always moved; a page below them stays only if every
 * one of its rows has a source, and rows a page kept for the window has no
 * source for (kept positions whose page was recycled) count as missing from
 * then on, so truncate never resumes on them. A checkpoint past the start of
 * the page holding n_keep is dropped. The caller checks 0 <= n_keep,
 * 0 < n_discard, n_keep + n_discard <= length. Returns the new length, or -1
 * with err set and seq unchanged: out of memory or over the cap for the page
 * copies, or the window after the shift would reach kept positions whose
 * sliding rows are gone (err then names the largest n_discard that works). */
int32_t g4_kv_shift(g4_kv_cache *kv, int32_t seq, int32_t n_keep, int32_t n_discard, g4_kv_rotate_fn rotate,
                    void *user, char *err);

#endif
