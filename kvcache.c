/* The paged KV cache (see kvcache.h). Pages are numbered by their index in
 * the pool; a sequence's table maps page number pos / page_size to a pool
 * index, or -1 where it has no page (never written, or recycled). */
#include "kvcache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#define REGION_ALIGN 64 /* each layer's K or V rows in a page start on a cache line */

typedef struct page_table {
    int32_t *page; /* page number -> pool index or -1 */
    int32_t n, cap;
} page_table;

typedef struct sequence {
    int32_t len;
    int32_t *tokens;
    int32_t tokens_cap;
    page_table t[G4_KV_KINDS];
    int32_t ckpt[G4_KV_CHECKPOINTS]; /* lengths, oldest first */
    int32_t n_ckpt;
    int32_t swa_scan; /* sliding pages below this number are recycled or pinned */
    /* sliding rows below this position count as missing even where their
     * page is there: a context shift kept the page for the window's rows
     * above it but had no rows to move below it */
    int32_t swa_from;
} sequence;

struct g4_kv_cache {
    int32_t n_layer, n_swa, page_size, n_seq, n_ctx;
    enum g4_type type_k, type_v;
    /* per layer: page kind, byte offsets of its K and V regions, row bytes */
    int8_t *kind;
    size_t *k_off, *v_off, *k_row, *v_row;
    int32_t *width;
    uint64_t page_bytes[G4_KV_KINDS];
    uint64_t max_bytes;
    /* the pool: page memory, owner count, kind; free lists per kind of pages
     * that still have memory, and slots whose memory went back to the OS */
    char **mem;
    int32_t *ref;
    int8_t *page_kind;
    int32_t n_pages, cap_pages;
    int32_t *free_list[G4_KV_KINDS], n_free[G4_KV_KINDS];
    int32_t *dead, n_dead;
    int32_t pages_allocated[G4_KV_KINDS], pages_used[G4_KV_KINDS];
    sequence *seq;
};

static size_t align_up(size_t n) { return (n + REGION_ALIGN - 1) / REGION_ALIGN * REGION_ALIGN; }

bool g4_kv_type_supported(enum g4_type type) {
    return type == G4_TYPE_F32 || type == G4_TYPE_F16 || type == G4_TYPE_Q8_0;
}

int g4_kv_type_from_name(const char *name, enum g4_type *type) {
    const enum g4_type types[] = {G4_TYPE_F32, G4_TYPE_F16, G4_TYPE_Q8_0};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(name, g4_type_name(types[i]))) return *type = types[i], 0;
    return -1;
}

g4_kv_cache *g4_kv_new(const g4_kv_params *p, char *err) {
    const enum g4_type types[] = {p->type_k, p->type_v};
    for (int i = 0; i < 2; i++)
        if (!g4_kv_type_supported(types[i]))
            return g4_error(err, NULL, "KV cache: type %s is not supported (f32, f16, q8_0)", g4_type_name(types[i])), NULL;
    if (p->page_size < 1 || p->n_seq < 1 || p->n_ctx < 1 || p->n_swa < 1 || p->n_layer < 1)
        return g4_error(err, NULL, "KV cache: page size, sequences, context and window must be positive"), NULL;
    for (int32_t l = 0; l < p->n_layer; l++)
        for (int i = 0; i < 2; i++)
            if (p->width[l] % g4_type_info(types[i])->blck_size)
                return g4_error(err, NULL, "KV cache: layer %d rows of %d values do not fit %s blocks", l, p->width[l],
                            g4_type_name(types[i])), NULL;
    g4_kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv) return g4_error(err, NULL, "KV cache: out of memory"), NULL;
    *kv = (g4_kv_cache){.n_layer = p->n_layer, .n_swa = p->n_swa, .page_size = p->page_size, .n_seq = p->n_seq,
                        .n_ctx = p->n_ctx, .type_k = p->type_k, .type_v = p->type_v, .max_bytes = p->max_bytes};
    const size_t L = (size_t)p->n_layer;
    kv->kind = malloc(L);
    kv->k_off = malloc(L * sizeof *kv->k_off);
    kv->v_off = malloc(L * sizeof *kv->v_off);
    kv->k_row = malloc(L * sizeof *kv->k_row);
    kv->v_row = malloc(L * sizeof *kv->v_row);
    kv->width = malloc(L * sizeof *kv->width);
    kv->seq = calloc((size_t)p->n_seq, sizeof *kv->seq);
    if (!kv->kind || !kv->k_off || !kv->v_off || !kv->k_row || !kv->v_row || !kv->width || !kv->seq) {
        g4_kv_free(kv);
        return g4_error(err, NULL, "KV cache: out of memory"), NULL;
    }
    for (int32_t l = 0; l < p->n_layer; l++) {
        const int k = p->swa[l] ? G4_KV_SWA : G4_KV_FULL;
        kv->kind[l] = (int8_t)k;
        kv->width[l] = p->width[l];
        kv->k_row[l] = g4_row_size(p->type_k, p->width[l]);
        kv->v_row[l] = g4_row_size(p->type_v, p->width[l]);
        kv->k_off[l] = kv->page_bytes[k];
        kv->page_bytes[k] += align_up((size_t)p->page_size * kv->k_row[l]);
        kv->v_off[l] = kv->page_bytes[k];
        kv->page_bytes[k] += align_up((size_t)p->page_size * kv->v_row[l]);
    }
    return kv;
}

void g4_kv_free(g4_kv_cache *kv) {
    if (!kv) return;
    for (int32_t i = 0; i < kv->n_pages; i++) free(kv->mem[i]);
    for (int32_t s = 0; kv->seq && s < kv->n_seq; s++) {
        free(kv->seq[s].tokens);
        for (int k = 0; k < G4_KV_KINDS; k++) free(kv->seq[s].t[k].page);
    }
    for (int k = 0; k < G4_KV_KINDS; k++) free(kv->free_list[k]);
    free(kv->dead);
    free(kv->mem);
    free(kv->ref);
    free(kv->page_kind);
    free(kv->seq);
    free(kv->kind);
    free(kv->k_off);
    free(kv->v_off);
    free(kv->k_row);
    free(kv->v_row);
    free(kv->width);
    free(kv);
}

/* ---------------------------------------------------------------- geometry */

uint64_t g4_kv_bytes_per_token(const g4_kv_cache *kv, int kind) {
    uint64_t b = 0;
    for (int32_t l = 0; l < kv->n_layer; l++)
        if (kv->kind[l] == kind) b += kv->k_row[l] + kv->v_row[l];
    return b;
}

/* Sliding pages are recycled once their last position is below this: the
 * window of the next token, less one page of slack. */
static int64_t swa_keep_from(const g4_kv_cache *kv, int64_t len) {
    return len - kv->n_swa + 1 - kv->page_size;
}

static int64_t pages_for(const g4_kv_cache *kv, int64_t n_pos) { return (n_pos + kv->page_size - 1) / kv->page_size; }

uint64_t g4_kv_seq_bytes(const g4_kv_cache *kv, int64_t n_pos) {
    const int64_t P = kv->page_size, from = swa_keep_from(kv, n_pos);
    /* sliding pages from the one holding position max(from, 0) up to the last written */
    const int64_t first_swa = from > 0 ? from / P : 0;
    const int64_t n_swa_pages = pages_for(kv, n_pos) - first_swa;
    return (uint64_t)pages_for(kv, n_pos) * kv->page_bytes[G4_KV_FULL] + (uint64_t)n_swa_pages * kv->page_bytes[G4_KV_SWA];
}

void g4_kv_usage_get(const g4_kv_cache *kv, g4_kv_usage *u) {
    *u = (g4_kv_usage){.max_bytes = kv->max_bytes};
    for (int k = 0; k < G4_KV_KINDS; k++) {
        u->pages_used[k] = kv->pages_used[k];
        u->pages_allocated[k] = kv->pages_allocated[k];
        u->page_bytes[k] = kv->page_bytes[k];
        u->bytes_used += (uint64_t)kv->pages_used[k] * kv->page_bytes[k];
        u->bytes_allocated += (uint64_t)kv->pages_allocated[k] * kv->page_bytes[k];
    }
}

int32_t g4_kv_len(const g4_kv_cache *kv, int32_t seq) { return kv->seq[seq].len; }
const int32_t *g4_kv_tokens(const g4_kv_cache *kv, int32_t seq) { return kv->seq[seq].tokens; }
int32_t g4_kv_n_ctx(const g4_kv_cache *kv) { return kv->n_ctx; }
int32_t g4_kv_n_seq(const g4_kv_cache *kv) { return kv->n_seq; }

/* ---------------------------------------------------------------- the pool */

static bool grow(void **arr, int32_t *cap, int32_t need, size_t elem) {
    if (need <= *cap) return true;
    int32_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *g = realloc(*arr, (size_t)c * elem);
    if (!g) return false;
    *arr = g;
    *cap = c;
    return true;
}

/* Gives the memory of the free pages of a kind back to the OS. */
static void drop_free_pages(g4_kv_cache *kv, int kind) {
    while (kv->n_free[kind]) {
        const int32_t i = kv->free_list[kind][--kv->n_free[kind]];
        free(kv->mem[i]);
        kv->mem[i] = NULL;
        kv->dead[kv->n_dead++] = i;
        kv->pages_allocated[kind]--;
    }
}

static uint64_t bytes_allocated(const g4_kv_cache *kv) {
    g4_kv_usage u;
    g4_kv_usage_get(kv, &u);
    return u.bytes_allocated;
}

/* Room for n page slots in every per-page array (any slot's index may sit on
 * a free list or the dead list). */
static bool pool_fit(g4_kv_cache *kv, int32_t n) {
    if (n <= kv->cap_pages) return true;
    const int32_t cap = kv->cap_pages ? 2 * kv->cap_pages : 64;
    void **arrays[] = {(void **)&kv->mem, (void **)&kv->ref, (void **)&kv->page_kind, (void **)&kv->free_list[0],
                       (void **)&kv->free_list[1], (void **)&kv->dead};
    const size_t elem[] = {sizeof *kv->mem, sizeof *kv->ref, sizeof *kv->page_kind, sizeof(int32_t), sizeof(int32_t),
                           sizeof *kv->dead};
    for (size_t a = 0; a < sizeof arrays / sizeof arrays[0]; a++) {
        void *g = realloc(*arrays[a], (size_t)cap * elem[a]);
        if (!g) return false;
        *arrays[a] = g;
    }
    kv->cap_pages = cap;
    return true;
}

enum { PAGE_CAP = -1, PAGE_OOM = -2 };

/* A page of a kind with one owner, or PAGE_CAP / PAGE_OOM. */
static int32_t page_new(g4_kv_cache *kv, int kind) {
    int32_t i;
    if (kv->n_free[kind]) {
        i = kv->free_list[kind][--kv->n_free[kind]];
    } else {
        const uint64_t pb = kv->page_bytes[kind];
        if (kv->max_bytes && bytes_allocated(kv) + pb > kv->max_bytes) drop_free_pages(kv, !kind);
        if (kv->max_bytes && bytes_allocated(kv) + pb > kv->max_bytes) return PAGE_CAP;
        char *mem = pool_fit(kv, kv->n_pages + 1) ? malloc(pb) : NULL;
        if (!mem) return PAGE_OOM;
        i = kv->n_dead ? kv->dead[--kv->n_dead] : kv->n_pages++;
        kv->mem[i] = mem;
        kv->page_kind[i] = (int8_t)kind;
        kv->pages_allocated[kind]++;
    }
    kv->ref[i] = 1;
    kv->pages_used[kind]++;
    return i;
}

static void page_unref(g4_kv_cache *kv, int32_t i) {
    if (--kv->ref[i]) return;
    const int kind = kv->page_kind[i];
    kv->free_list[kind][kv->n_free[kind]++] = i;
    kv->pages_used[kind]--;
}

/* ---------------------------------------------------------------- page tables */

static bool table_fit(page_table *t, int32_t n) {
    if (!grow((void **)&t->page, &t->cap, n, sizeof *t->page)) return false;
    while (t->n < n) t->page[t->n++] = -1;
    return true;
}

/* Releases the pages numbered >= from. */
static void table_cut(g4_kv_cache *kv, page_table *t, int32_t from) {
    for (int32_t pn = from; pn < t->n; pn++)
        if (t->page[pn] >= 0) page_unref(kv, t->page[pn]);
    if (from < t->n) t->n = from;
}

static bool kind_used(const g4_kv_cache *kv, int kind) { return kv->page_bytes[kind] > 0; }

/* Whether the sliding page pn must stay: in the live window or pinned. */
static bool swa_page_needed(const g4_kv_cache *kv, const sequence *s, int64_t pn) {
    const int64_t P = kv->page_size, last = (pn + 1) * P - 1;
    if (last >= swa_keep_from(kv, s->len)) return true;
    for (int32_t c = 0; c < s->n_ckpt; c++)
        if (last >= s->ckpt[c] - kv->n_swa + 1 && pn * P <= s->ckpt[c] - 1) return true;
    return false;
}

static void recycle(g4_kv_cache *kv, sequence *s) {
    page_table *t = &s->t[G4_KV_SWA];
    const int64_t from = swa_keep_from(kv, s->len);
    const int32_t end = from > 0 ? (int32_t)(from / kv->page_size) : 0; /* first page that may be live */
    for (int32_t pn = s->swa_scan; pn < end && pn < t->n; pn++)
        if (t->page[pn] >= 0 && !swa_page_needed(kv, s, pn)) page_unref(kv, t->page[pn]), t->page[pn] = -1;
    if (end > s->swa_scan) s->swa_scan = end;
}

/* A private copy of a shared page (or PAGE_CAP / PAGE_OOM). */
static int32_t page_own(g4_kv_cache *kv, int32_t i) {
    if (kv->ref[i] == 1) return i;
    const int32_t c = page_new(kv, kv->page_kind[i]);
    if (c < 0) return c;
    memcpy(kv->mem[c], kv->mem[i], kv->page_bytes[kv->page_kind[i]]);
    page_unref(kv, i);
    return c;
}

int g4_kv_reserve(g4_kv_cache *kv, int32_t seq, int32_t n, char *err) {
    sequence *s = &kv->seq[seq];
    const int32_t P = kv->page_size;
    int32_t i = PAGE_OOM;
    if (n <= 0) return 0;
    if (!grow((void **)&s->tokens, &s->tokens_cap, s->len + n, sizeof *s->tokens)) goto fail;
    for (int k = 0; k < G4_KV_KINDS; k++) {
        if (!kind_used(kv, k)) continue;
        page_table *t = &s->t[k];
        const int32_t first = s->len / P, end = (int32_t)pages_for(kv, (int64_t)s->len + n);
        if (!table_fit(t, end)) goto fail;
        for (int32_t pn = first; pn < end; pn++) {
            i = t->page[pn] >= 0 ? page_own(kv, t->page[pn]) : page_new(kv, k);
            if (i < 0) goto fail;
            t->page[pn] = i;
        }
    }
    return 0;
fail:
    g4_kv_unreserve(kv, seq);
    if (i == PAGE_CAP)
        return g4_error(err, NULL, "KV cache full: %llu bytes of pages, limit %llu", (unsigned long long)bytes_allocated(kv),
                    (unsigned long long)kv->max_bytes);
    return g4_error(err, NULL, "KV cache: out of memory");
}

void g4_kv_unreserve(g4_kv_cache *kv, int32_t seq) {
    sequence *s = &kv->seq[seq];
    for (int k = 0; k < G4_KV_KINDS; k++) table_cut(kv, &s->t[k], (int32_t)pages_for(kv, s->len));
}

static char *row(const g4_kv_cache *kv, int32_t seq, int32_t il, int32_t pos, bool v) {
    const int32_t i = kv->seq[seq].t[kv->kind[il]].page[pos / kv->page_size];
    const size_t r = (size_t)(pos % kv->page_size);
    return kv->mem[i] + (v ? kv->v_off[il] + r * kv->v_row[il] : kv->k_off[il] + r * kv->k_row[il]);
}

void g4_kv_store(g4_kv_cache *kv, int32_t seq, int32_t il, int32_t pos, const float *k, const float *v) {
    g4_quantize_row(kv->type_k, k, row(kv, seq, il, pos, false), kv->width[il]);
    g4_quantize_row(kv->type_v, v, row(kv, seq, il, pos, true), kv->width[il]);
}

const void *g4_kv_rows(const g4_kv_cache *kv, int32_t seq, int32_t il, int32_t pos, bool v, int32_t *n_rows,
                       size_t *stride) {
    *n_rows = kv->page_size - pos % kv->page_size;
    *stride = v ? kv->v_row[il] : kv->k_row[il];
    return row(kv, seq, il, pos, v);
}

/* One loop per type, so that the type test stays out of the inner loop. */
void g4_kv_advance(g4_kv_cache *kv, int32_t seq, const int32_t *tokens, int32_t n) {
    sequence *s = &kv->seq[seq];
    memcpy(s->tokens + s->len, tokens, (size_t)n * sizeof *tokens);
    s->len += n;
    recycle(kv, s);
}

/* ---------------------------------------------------------------- sequences */

int32_t g4_kv_common_prefix(const g4_kv_cache *kv, int32_t seq, const int32_t *tokens, int32_t n) {
    const sequence *s = &kv->seq[seq];
    int32_t k = 0;
    while (k < n && k < s->len && s->tokens[k] == tokens[k]) k++;
    return k;
}

/* Whether the sliding pages that the next token after position x-1 reads
 * are all still there. */
static bool can_resume_at(const g4_kv_cache *kv, const sequence *s, int32_t x) {
    if (x == s->len || !kind_used(kv, G4_KV_SWA)) return true;
    const int32_t lo = x - kv->n_swa + 1 > 0 ? x - kv->n_swa + 1 : 0;
    const page_table *t = &s->t[G4_KV_SWA];
    if (lo < s->swa_from) return false;
    for (int32_t pn = lo / kv->page_size; pn * kv->page_size < x; pn++)
        if (pn >= t->n || t->page[pn] < 0) return false;
    return true;
}

int32_t g4_kv_truncate(g4_kv_cache *kv, int32_t seq, int32_t n_keep) {
    sequence *s = &kv->seq[seq];
    if (n_keep < 0) n_keep = 0;
    if (n_keep >= s->len) return s->len;
    int32_t x = 0;
    if (can_resume_at(kv, s, n_keep)) x = n_keep;
    else
        for (int32_t c = s->n_ckpt - 1; c >= 0 && !x; c--)
            if (s->ckpt[c] <= n_keep) x = s->ckpt[c];
    int32_t kept = 0;
    for (int32_t c = 0; c < s->n_ckpt; c++)
        if (s->ckpt[c] <= x) s->ckpt[kept++] = s->ckpt[c];
    s->n_ckpt = kept;
    s->len = x;
    if (s->swa_from > x) s->swa_from = x; /* the rows from x on are written again */
    for (int k = 0; k < G4_KV_KINDS; k++) table_cut(kv, &s->t[k], (int32_t)pages_for(kv, x));
    s->swa_scan = 0; /* pages a dropped checkpoint pinned may be free now */
    recycle(kv, s);
    return x;
}

int g4_kv_fork(g4_kv_cache *kv, int32_t src, int32_t dst, char *err) {
    if (src == dst) return 0;
    g4_kv_truncate(kv, dst, 0);
    sequence *a = &kv->seq[src], *b = &kv->seq[dst];
    if (!grow((void **)&b->tokens, &b->tokens_cap, a->len, sizeof *b->tokens)) return g4_error(err, NULL, "KV cache: out of memory");
    for (int k = 0; k < G4_KV_KINDS; k++)
        if (!table_fit(&b->t[k], a->t[k].n)) return g4_error(err, NULL, "KV cache: out of memory");
    for (int k = 0; k < G4_KV_KINDS; k++)
        for (int32_t pn = 0; pn < a->t[k].n; pn++)
            if ((b->t[k].page[pn] = a->t[k].page[pn]) >= 0) kv->ref[b->t[k].page[pn]]++;
    memcpy(b->tokens, a->tokens, (size_t)a->len * sizeof *a->tokens);
    b->len = a->len;
    memcpy(b->ckpt, a->ckpt, sizeof a->ckpt);
    b->n_ckpt = a->n_ckpt;
    b->swa_scan = a->swa_scan;
    b->swa_from = a->swa_from;
    return 0;
}

void g4_kv_checkpoint(g4_kv_cache *kv, int32_t seq) {
    sequence *s = &kv->seq[seq];
    if (s->len == 0 || (s->n_ckpt && s->ckpt[s->n_ckpt - 1] == s->len)) return;
    if (s->n_ckpt == G4_KV_CHECKPOINTS) {
        memmove(s->ckpt, s->ckpt + 1, (G4_KV_CHECKPOINTS - 1) * sizeof *s->ckpt);
        s->n_ckpt--;
        s->swa_scan = 0;
    }
    s->ckpt[s->n_ckpt++] = s->len;
    recycle(kv, s);
}

/* ---------------------------------------------------------------- context shift */

/* Whether seq holds a trustworthy sliding row at pos. */
static bool swa_has(const g4_kv_cache *kv, const sequence *s, int64_t pos) {
    const page_table *t = &s->t[G4_KV_SWA];
    const int64_t pn = pos / kv->page_size;
    return pos >= s->swa_from && pn < t->n && t->page[pn] >= 0;
}

/* The position whose rows land at q when n_discard positions after n_keep go. */
static int32_t shift_source(int32_t q, int32_t n_keep, int32_t n_discard) { return q < n_keep ? q : q + n_discard; }

/* The error of a shift whose window would need missing sliding rows, with
 * the largest discard that keeps the window clear of them: the sliding rows
 * from e on are all there (recycling works from the bottom up), and after a
 * discard of d the window starts at len - d - n_swa + 1, which must be at
 * n_keep (no kept row needed) or at e. */
static int shift_window_error(const g4_kv_cache *kv, const sequence *s, int32_t n_keep, int32_t n_discard, char *err) {
    int32_t e = s->len;
    while (e > 0 && swa_has(kv, s, e - 1)) e--;
    const int64_t max_d = (int64_t)s->len - kv->n_swa + 1 - (n_keep < e ? n_keep : e);
    if (max_d >= 1)
        return g4_error(err, NULL, "context shift: discarding %d would bring the sliding window back to kept positions "
                        "whose rows were recycled; discard at most %lld", n_discard, (long long)max_d);
    return g4_error(err, NULL, "context shift: the sliding window after any shift would reach kept positions whose "
                    "rows were recycled (keep fewer than %d)", n_keep);
}

/* One moved position of layer il: V as it is, K through f32 and rotate. */
static void shift_row(g4_kv_cache *kv, int32_t seq, int32_t il, int32_t from, int32_t to, float *buf,
                      g4_kv_rotate_fn rotate, void *user) {
    g4_dequantize_row(kv->type_k, row(kv, seq, il, from, false), buf, kv->width[il]);
    rotate(user, il, buf, from, to);
    g4_quantize_row(kv->type_k, buf, row(kv, seq, il, to, false), kv->width[il]);
    memcpy(row(kv, seq, il, to, true), row(kv, seq, il, from, true), kv->v_row[il]);
}

/* Destination pages [first, first + n_dst) of the new positions: full pages
 * all stay; a sliding page stays when it holds a row of the new window or
 * every one of its rows has a source (have[q - first * P]). */
static bool shift_page_stays(const g4_kv_cache *kv, int kind, int32_t pn, int32_t first, int32_t new_len,
                             const bool *have) {
    if (kind == G4_KV_FULL) return true;
    const int32_t P = kv->page_size;
    if ((int64_t)(pn + 1) * P - 1 >= (int64_t)new_len - kv->n_swa + 1) return true;
    for (int32_t q = pn * P; q < (pn + 1) * P && q < new_len; q++)
        if (!have[q - first * P]) return false;
    return true;
}

int32_t g4_kv_shift(g4_kv_cache *kv, int32_t seq, int32_t n_keep, int32_t n_discard, g4_kv_rotate_fn rotate,
                    void *user, char *err) {
    sequence *s = &kv->seq[seq];
    const int32_t P = kv->page_size, new_len = s->len - n_discard, first = n_keep / P;
    const bool sliding = kind_used(kv, G4_KV_SWA);
    /* the pages holding moved rows; none when nothing moves */
    const int32_t n_dst = new_len > n_keep ? (int32_t)pages_for(kv, new_len) - first : 0;

    if (sliding) /* the window of the token after the shift must be there */
        for (int32_t q = new_len - kv->n_swa + 1 > 0 ? new_len - kv->n_swa + 1 : 0; q < new_len; q++)
            if (!swa_has(kv, s, shift_source(q, n_keep, n_discard)))
                return shift_window_error(kv, s, n_keep, n_discard, err);

    int32_t max_width = 1;
    for (int32_t l = 0; l < kv->n_layer; l++)
        if (kv->width[l] > max_width) max_width = kv->width[l];
    /* per kind and destination page: stays, was taken fresh from the pool;
     * per destination row: its sliding source is there (looked up before
     * any page is taken, since a fresh page holds no rows yet) */
    const size_t n_rows = (size_t)n_dst * (size_t)P;
    bool *stays = malloc((2 * G4_KV_KINDS * (size_t)n_dst + n_rows + 1) * sizeof(bool));
    bool *fresh = stays + G4_KV_KINDS * n_dst, *have = fresh + G4_KV_KINDS * n_dst;
    float *buf = malloc((size_t)max_width * sizeof *buf);
    if (!stays || !buf) {
        free(stays);
        free(buf);
        return g4_error(err, NULL, "KV cache: out of memory");
    }
    for (size_t r = 0; r < n_rows; r++) {
        const int32_t q = first * P + (int32_t)r;
        have[r] = sliding && q < new_len && swa_has(kv, s, shift_source(q, n_keep, n_discard));
    }
    int32_t i = 0;
    for (int k = 0; k < G4_KV_KINDS && i >= 0; k++) {
        page_table *t = &s->t[k];
        for (int32_t d = 0; d < n_dst && i >= 0; d++) {
            const int32_t pn = first + d;
            stays[k * n_dst + d] = kind_used(kv, k) && shift_page_stays(kv, k, pn, first, new_len, have);
            fresh[k * n_dst + d] = false;
            if (!stays[k * n_dst + d]) continue;
            /* a shared page is copied before it is written: its other owners keep their rows */
            i = t->page[pn] >= 0 ? page_own(kv, t->page[pn]) : page_new(kv, k);
            if (i >= 0) fresh[k * n_dst + d] = t->page[pn] < 0, t->page[pn] = i;
        }
    }
    if (i < 0) { /* the copies stay (they hold the same rows); fresh pages go back */
        for (int k = 0; k < G4_KV_KINDS; k++)
            for (int32_t d = 0; d < n_dst; d++)
                if (fresh[k * n_dst + d]) page_unref(kv, s->t[k].page[first + d]), s->t[k].page[first + d] = -1;
        free(stays);
        free(buf);
        if (i == PAGE_CAP)
            return g4_error(err, NULL, "KV cache full: %llu bytes of pages, limit %llu",
                            (unsigned long long)bytes_allocated(kv), (unsigned long long)kv->max_bytes);
        return g4_error(err, NULL, "KV cache: out of memory");
    }

    /* upwards: the row written at q was the source of q - n_discard, already moved */
    for (int32_t q = n_keep; q < new_len; q++) {
        const int32_t d = q / P - first;
        for (int32_t il = 0; il < kv->n_layer; il++) {
            const int k = kv->kind[il];
            if (kv->width[il] && stays[k * n_dst + d] && (k == G4_KV_FULL || have[q - first * P]))
                shift_row(kv, seq, il, q + n_discard, q, buf, rotate, user);
        }
    }

    /* sliding rows below swa_from stay untrusted at their new places; so do
     * the rows a page kept for the window had no source for */
    int32_t from = s->swa_from;
    if (from > n_keep) from = from - n_discard > n_keep ? from - n_discard : n_keep;
    for (int32_t d = 0; d < n_dst; d++)
        if (stays[G4_KV_SWA * n_dst + d])
            for (int32_t q = (first + d) * P; q < (first + d + 1) * P && q < new_len; q++)
                if (!have[q - first * P] && q + 1 > from) from = q + 1;
    for (int k = 0; k < G4_KV_KINDS; k++) {
        page_table *t = &s->t[k];
        for (int32_t d = 0; d < n_dst; d++)
            if (kind_used(kv, k) && !stays[k * n_dst + d] && t->page[first + d] >= 0)
                page_unref(kv, t->page[first + d]), t->page[first + d] = -1;
        table_cut(kv, t, (int32_t)pages_for(kv, new_len));
    }
    memmove(s->tokens + n_keep, s->tokens + n_keep + n_discard, (size_t)(new_len - n_keep) * sizeof *s->tokens);
    s->len = new_len;
    s->swa_from = from;
    /* a checkpoint still holds when its window lies in the pages the shift
     * left alone (a page it pinned higher up may have been dropped) */
    int32_t kept = 0;
    for (int32_t c = 0; c < s->n_ckpt; c++)
        if (s->ckpt[c] <= first * P) s->ckpt[kept++] = s->ckpt[c];
    s->n_ckpt = kept;
    s->swa_scan = 0;
    recycle(kv, s);
    free(stays);
    free(buf);
    return new_len;
}
