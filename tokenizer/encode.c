/* Text -> token ids, as llama.cpp's llama_tokenize:
 *   1. special-token partition (longest token text first, each cut out of
 *      the still-raw fragments; control tokens only with parse_special),
 *   2. per raw fragment: spaces -> U+2581,
 *   3. gemma4 (BPE): split into runs of '\n' and runs of other bytes; a
 *      newline run that is a token is emitted whole, everything else is
 *      merged pairwise by merge rank (leftmost on ties);
 *      llama (SPM): merged pairwise by token score (highest first),
 *   4. symbols that are not tokens fall back to <0xHH> byte tokens.
 * Pair merging keeps a heap of candidate pairs and skips stale ones, so a
 * run of n characters costs O(n log n). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/vocab_impl.h"

typedef struct ids_vec {
    int32_t *a;
    size_t n, cap;
    bool oom;
} ids_vec;

static void push_id(ids_vec *o, int32_t id) {
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 64;
        int32_t *a = realloc(o->a, cap * sizeof *a);
        if (!a) {
            o->oom = true;
            return;
        }
        o->a = a;
        o->cap = cap;
    }
    o->a[o->n++] = id;
}

/* One symbol of a run being merged: a byte range of the run, linked to its
 * alive neighbours. n == 0 once merged into its left neighbour. */
typedef struct symbol {
    int32_t prev, next;
    uint32_t off, n;
    int32_t id; /* token of this text, -1 if none */
} symbol;

/* A candidate merge of two adjacent symbols. cost: merge rank (BPE) or
 * minus the score of the merged token (SPM); lower merges first, ties go
 * to the leftmost pair. size detects stale entries: both symbols only grow,
 * so an unchanged pair still has the same total length. */
typedef struct pair_item {
    double cost;
    int32_t left, right;
    uint32_t size;
    int32_t result; /* token id of the merged text */
} pair_item;

typedef struct session {
    const g4_vocab *v;
    const char *word;
    symbol *sym;
    size_t sym_cap;
    pair_item *heap;
    size_t heap_n, heap_cap;
    ids_vec out;
} session;

static bool before(const pair_item *a, const pair_item *b) {
    return a->cost < b->cost || (a->cost == b->cost && a->left < b->left);
}

static void heap_push(session *s, pair_item it) {
    if (s->heap_n == s->heap_cap) {
        size_t cap = s->heap_cap ? 2 * s->heap_cap : 256;
        pair_item *h = realloc(s->heap, cap * sizeof *h);
        if (!h) {
            s->out.oom = true;
            return;
        }
        s->heap = h;
        s->heap_cap = cap;
    }
    size_t i = s->heap_n++;
    while (i > 0 && before(&it, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = it;
}

static pair_item heap_pop(session *s) {
    pair_item top = s->heap[0], last = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(&s->heap[c + 1], &s->heap[c])) c++;
        if (!before(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = last;
    return top;
}

/* BPE: a pair can merge iff the merge table names its two tokens. */
static void add_pair_bpe(session *s, int32_t l, int32_t r) {
    if (l < 0 || r < 0 || s->sym[l].id < 0 || s->sym[r].id < 0) return;
    const g4_merge *m = g4_merge_find(s->v, s->sym[l].id, s->sym[r].id);
    if (m) heap_push(s, (pair_item){m->rank, l, r, s->sym[l].n + s->sym[r].n, m->result});
}

/* SPM: a pair can merge iff its joined text is a token; best score first. */
static void add_pair_spm(session *s, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    uint32_t size = s->sym[l].n + s->sym[r].n;
    int32_t id = g4_vocab_find(s->v, s->word + s->sym[l].off, size);
    if (id >= 0) heap_push(s, (pair_item){-(double)s->v->score[id], l, r, size, id});
}

/* Splits the run into UTF-8 characters (by lead byte, as llama.cpp) and
 * merges pairs until none is left; symbols stay in s->sym. */
static void merge_run(session *s, const char *w, size_t len, void (*add_pair)(session *, int32_t, int32_t)) {
    if (len > s->sym_cap) {
        symbol *sym = realloc(s->sym, len * sizeof *sym);
        if (!sym) {
            s->out.oom = true;
            return;
        }
        s->sym = sym;
        s->sym_cap = len;
    }
    s->word = w;
    int32_t n = 0;
    for (size_t off = 0; off < len; n++) {
        size_t c = g4_utf8_len((unsigned char)w[off]);
        if (c > len - off) c = len - off;
        /* A broken sequence must not swallow the first bytes of an escaped
         * space: llama.cpp lets it, and that space then decodes as U+2581
         * instead of ' '. Valid UTF-8 never has 0xE2 inside a character, so
         * this changes nothing for valid text. */
        for (size_t j = 1; j < c; j++) {
            if (off + j + 3 <= len && memcmp(w + off + j, "\xe2\x96\x81", 3) == 0) {
                c = j;
                break;
            }
        }
        s->sym[n] = (symbol){n - 1, off + c == len ? -1 : n + 1, (uint32_t)off, (uint32_t)c,
                             g4_vocab_find(s->v, w + off, c)};
        off += c;
    }
    s->heap_n = 0;
    for (int32_t i = 1; i < n; i++) add_pair(s, i - 1, i);
    while (s->heap_n) {
        pair_item it = heap_pop(s);
        symbol *l = &s->sym[it.left], *r = &s->sym[it.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != it.size) continue;
        l->n += r->n;
        l->id = it.result;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s->sym[r->next].prev = it.left;
        add_pair(s, l->prev, it.left);
        add_pair(s, it.left, l->next);
    }
}

/* Emits the merged symbols; a symbol that is not a token becomes one byte
 * token per byte. SentencePiece vocabularies may spell a byte as the
 * one-character token instead; bytes with neither are dropped, as in
 * llama.cpp's gemma4 path. */
static void emit_run(session *s, size_t len) {
    for (int32_t i = 0; len && i >= 0; i = s->sym[i].next) {
        const symbol *y = &s->sym[i];
        if (y->id >= 0) {
            push_id(&s->out, y->id);
            continue;
        }
        for (uint32_t k = 0; k < y->n; k++) {
            const char *b = s->word + y->off + k;
            int32_t id = s->v->byte_token[(unsigned char)*b];
            if (id < 0 && s->v->model == G4_MODEL_SPM) id = g4_vocab_find(s->v, b, 1);
            if (id >= 0) push_id(&s->out, id);
        }
    }
}

static void bpe_run(session *s, const char *w, size_t len) {
    if (w[0] == '\n') { /* runs of newlines are looked up whole first (llama.cpp PR 21343) */
        int32_t id = g4_vocab_find(s->v, w, len);
        if (id >= 0) {
            push_id(&s->out, id);
            return;
        }
    }
    merge_run(s, w, len, add_pair_bpe);
    if (!s->out.oom) emit_run(s, len);
}

/* Writes text with every ' ' replaced by U+2581; returns the new length. */
static size_t escape_spaces(char *dst, const char *src, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (src[i] == ' ') {
            memcpy(dst + k, "\xe2\x96\x81", 3);
            k += 3;
        } else {
            dst[k++] = src[i];
        }
    }
    return k;
}

/* One raw fragment (no special tokens in it). after_special: the fragment
 * follows BOS, a special token or the start (SPM adds a space then). */
static void encode_fragment(session *s, char *buf, const char *text, size_t n, bool after_special) {
    const g4_vocab *v = s->v;
    if (v->model == G4_MODEL_SPM) {
        size_t k = 0;
        if (v->add_space_prefix && after_special) k = escape_spaces(buf, " ", 1);
        k += escape_spaces(buf + k, text, n);
        merge_run(s, buf, k, add_pair_spm);
        if (!s->out.oom) emit_run(s, k);
        return;
    }
    size_t k = escape_spaces(buf, text, n);
    for (size_t i = 0; i < k && !s->out.oom;) {
        size_t j = i;
        bool newline = buf[i] == '\n';
        while (j < k && (buf[j] == '\n') == newline) j++;
        bpe_run(s, buf + i, j - i);
        i = j;
    }
}

/* An occurrence of a special token in the text. */
typedef struct match {
    int32_t priority, token;
    size_t pos, len;
} match;

static int by_priority_then_pos(const void *a, const void *b) {
    const match *x = a, *y = b;
    if (x->priority != y->priority) return x->priority < y->priority ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static int by_pos(const void *a, const void *b) {
    const match *x = a, *y = b;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

/* The special tokens llama.cpp's partition would cut out, sorted by
 * position. It tries tokens one at a time, longest first, taking each
 * leftmost non-overlapping occurrence that lies wholly in text no earlier
 * token has taken. Same result here from all occurrences at once: sorted by
 * (priority, position), each is kept if none of its bytes is taken yet.
 * Returns the count, or -1 when out of memory. */
static int64_t find_specials(const g4_vocab *v, const char *text, size_t len, bool parse_special, match **out) {
    match *m = NULL;
    size_t n = 0, cap = 0;
    *out = NULL;
    for (size_t p = 0; p < len; p++) {
        int32_t node = 0;
        for (size_t q = p; q < len; q++) {
            int32_t ch = v->trie[node].child;
            while (ch >= 0 && v->trie[ch].byte != (unsigned char)text[q]) ch = v->trie[ch].sibling;
            if (ch < 0) break;
            node = ch;
            int32_t tok = v->trie[node].token;
            if (tok < 0 || (!parse_special && (v->attr[tok] & (G4_ATTR_CONTROL | G4_ATTR_UNKNOWN)))) continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                match *g = realloc(m, cap * sizeof *g);
                if (!g) {
                    free(m);
                    return -1;
                }
                m = g;
            }
            m[n++] = (match){v->trie[node].priority, tok, p, q + 1 - p};
        }
    }
    if (n == 0) return 0;
    uint8_t *taken = calloc(len, 1);
    if (!taken) {
        free(m);
        return -1;
    }
    qsort(m, n, sizeof *m, by_priority_then_pos);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (memchr(taken + m[i].pos, 1, m[i].len)) continue;
        memset(taken + m[i].pos, 1, m[i].len);
        m[kept++] = m[i];
    }
    free(taken);
    qsort(m, kept, sizeof *m, by_pos);
    *out = m;
    return (int64_t)kept;
}

int64_t g4_tokenize(const g4_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                    int32_t **ids, char *err) {
    *ids = NULL;
    if (len > (size_t)INT32_MAX / 4) {
        snprintf(err, G4_ERR_LEN, "tokenize: text of %zu bytes is too long", len);
        return -1;
    }
    match *specials;
    int64_t n_specials = find_specials(v, text, len, parse_special, &specials);
    char *buf = malloc(3 * len + 3); /* a fragment with its spaces escaped */
    session s = {.v = v};
    if (n_specials < 0 || !buf) s.out.oom = true;

    if (add_special && v->add_bos) push_id(&s.out, v->bos);
    size_t at = 0;
    bool after_special = true;
    for (int64_t i = 0; i <= n_specials && !s.out.oom; i++) {
        size_t end = i < n_specials ? specials[i].pos : len;
        if (end > at) {
            encode_fragment(&s, buf, text + at, end - at, after_special);
            after_special = false;
        }
        if (i < n_specials) {
            push_id(&s.out, specials[i].token);
            after_special = true;
            at = end + specials[i].len;
        }
    }
    if (add_special && v->add_eos) push_id(&s.out, v->eos);

    free(specials);
    free(buf);
    free(s.sym);
    free(s.heap);
    if (s.out.oom) {
        free(s.out.a);
        snprintf(err, G4_ERR_LEN, "tokenize: out of memory for %zu bytes of text", len);
        return -1;
    }
    *ids = s.out.a;
    return (int64_t)s.out.n;
}
