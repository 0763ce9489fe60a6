/* Matching: where a generation stands in a grammar, and which bytes may
 * come next.
 *
 * Like llama.cpp, the position is a set of parse stacks. A stack lists the
 * grammar elements still to match, innermost first; its top is always a
 * character class (rule references are expanded as soon as they reach the
 * top), and the empty stack means "the root rule is complete". A character
 * replaces each stack whose top admits it by its continuation.
 *
 * Unlike llama.cpp, the sets are interned and their transitions cached:
 * stacks are hash-consed (a stack is its top plus the id of the rest, so
 * stacks share their tails), a set of stacks gets one id, and a matcher
 * state (a set, plus the bytes read of an unfinished UTF-8 character) has
 * a 256-entry table of the state each next byte leads to, filled on first
 * use. The state after a whole character depends only on which stacks
 * admit it, which is cached as well. Masking the vocabulary is then mostly
 * table look-ups along the byte trie (grammar_vocab.c), and the last few
 * masks are kept as bitmaps: inside a JSON string almost every token leads
 * back to the same state, whose mask is then a copy. The cache is shared
 * by a state and its clones; states sharing one must not be used from two
 * threads at once. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/grammar_impl.h"

#define UNKNOWN (-2) /* transition not computed yet */
#define DEAD (-1)    /* no stack admits the byte */
/* Past this many matcher states the sole owner of a cache starts afresh
 * from its current state (each state costs 1 KiB of transitions). */
#define MAX_CACHED_STATES 16384
/* Masks remembered per cache: inside a string or a repeated item the
 * state after each token is often the one before it. */
#define MASK_CACHE 4

typedef struct gstack {
    uint32_t pos;  /* element on top */
    uint32_t rest; /* the stack below, 0 = empty */
} gstack;

typedef struct gstate {
    uint32_t set;
    uint32_t value; /* bits of the unfinished character so far */
    uint32_t need;  /* continuation bytes still to come, 0 = none */
    uint32_t size;  /* bytes of that character (0 = none) */
} gstate;

typedef struct table { /* open addressing over ids + 1 (0 = empty slot) */
    uint32_t *slot;
    uint32_t mask;
} table;

typedef struct automaton {
    const g4_grammar *g;
    int refs;
    gstack *stk; /* stk[0] is the empty stack */
    uint32_t n_stk, cap_stk;
    table stk_index;
    uint32_t *items; /* every set's sorted stack ids, back to back */
    size_t n_items, cap_items;
    uint32_t *set_first, *set_len;
    uint32_t n_sets, cap_sets;
    table set_index;
    gstate *st;
    int32_t *trans; /* 256 per state */
    uint32_t n_st, cap_st;
    table st_index;
    uint32_t *work, *out, *seen; /* scratch of advance(); seen is per stack */
    uint32_t cap_work, cap_out, cap_seen, gen;
    bool overflow; /* an advance exceeded G4_GRAMMAR_MAX_STACKS */
    bool oom;
    /* The state after a character depends only on which stacks admit it:
     * (set, bit mask of those stacks) -> state, for sets of <= 64 stacks. */
    struct moved { uint64_t admitted; uint32_t set; int32_t to; } *moved;
    uint32_t n_moved, moved_mask;
    /* The last few masks computed, as bitmaps of allowed tokens. */
    struct mask_cache { uint64_t serial; int32_t state; uint64_t *bits; } masks[MASK_CACHE]; /* serial: of the vocabulary */
    uint32_t next_mask;
} automaton;

struct g4_grammar_state {
    automaton *a;
    int32_t cur;
    bool ended; /* an end-of-generation token was accepted */
};

bool g4_gclass_has(const g4_grammar *g, uint32_t cls, uint32_t cp) {
    const g4_gclass *c = &g->classes[cls];
    bool in = false;
    for (uint32_t i = 0; i < c->n && !in; i++) in = cp >= g->ranges[c->first + i].lo && cp <= g->ranges[c->first + i].hi;
    return in != c->negated;
}

bool g4_gclass_meets(const g4_grammar *g, uint32_t cls, uint32_t lo, uint32_t hi) {
    const g4_gclass *c = &g->classes[cls];
    if (!c->negated) {
        for (uint32_t i = 0; i < c->n; i++)
            if (g->ranges[c->first + i].lo <= hi && g->ranges[c->first + i].hi >= lo) return true;
        return false;
    }
    /* complement: walk up from lo over the excluded ranges */
    for (uint64_t x = lo; x <= hi;) {
        bool covered = false;
        for (uint32_t i = 0; i < c->n && !covered; i++) {
            const g4_grange *r = &g->ranges[c->first + i];
            if (x >= r->lo && x <= r->hi) covered = true, x = (uint64_t)r->hi + 1;
        }
        if (!covered) return true;
    }
    return false;
}

static uint32_t mix(uint32_t h, uint32_t v) {
    h ^= v * 0x9e3779b1u;
    h = (h << 13 | h >> 19) * 0x85ebca6bu;
    return h ^ (h >> 16);
}

static bool table_grow(table *t, uint32_t n_used) {
    if (t->slot && (uint64_t)(n_used + 1) * 2 <= (uint64_t)t->mask + 1) return true;
    uint32_t size = t->slot ? (t->mask + 1) * 2 : 64;
    uint32_t *s = calloc(size, sizeof *s);
    if (!s) return false;
    free(t->slot); /* callers re-insert everything */
    t->slot = s;
    t->mask = size - 1;
    return true;
}

static bool reserve(void **p, uint32_t *cap, uint32_t need, size_t size) {
    if (need <= *cap) return true;
    uint32_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * size);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

/* --- stacks ------------------------------------------------------------ */

static uint32_t stack_hash(uint32_t pos, uint32_t rest) { return mix(mix(1, pos), rest); }

static void stack_reindex(automaton *a) {
    for (uint32_t id = 1; id < a->n_stk; id++) {
        uint32_t h = stack_hash(a->stk[id].pos, a->stk[id].rest) & a->stk_index.mask;
        while (a->stk_index.slot[h]) h = (h + 1) & a->stk_index.mask;
        a->stk_index.slot[h] = id + 1;
    }
}

/* The stack with pos on top of rest (0 and oom set when out of memory). */
static uint32_t stack_of(automaton *a, uint32_t pos, uint32_t rest) {
    uint32_t h = stack_hash(pos, rest) & a->stk_index.mask;
    for (uint32_t id; (id = a->stk_index.slot[h]) != 0; h = (h + 1) & a->stk_index.mask)
        if (a->stk[id - 1].pos == pos && a->stk[id - 1].rest == rest) return id - 1;
    uint32_t mask = a->stk_index.mask;
    if (!reserve((void **)&a->stk, &a->cap_stk, a->n_stk + 1, sizeof *a->stk) ||
        !reserve((void **)&a->seen, &a->cap_seen, a->n_stk + 1, sizeof *a->seen) || !table_grow(&a->stk_index, a->n_stk)) {
        a->oom = true;
        return 0;
    }
    uint32_t id = a->n_stk++;
    a->stk[id] = (gstack){pos, rest};
    a->seen[id] = 0;
    if (mask != a->stk_index.mask) stack_reindex(a);
    else a->stk_index.slot[h] = id + 1;
    return id;
}

/* --- sets of stacks ---------------------------------------------------- */

static uint32_t set_hash(const uint32_t *items, uint32_t n) {
    uint32_t h = mix(2, n);
    for (uint32_t i = 0; i < n; i++) h = mix(h, items[i]);
    return h;
}

static void set_reindex(automaton *a) {
    for (uint32_t id = 0; id < a->n_sets; id++) {
        uint32_t h = set_hash(a->items + a->set_first[id], a->set_len[id]) & a->set_index.mask;
        while (a->set_index.slot[h]) h = (h + 1) & a->set_index.mask;
        a->set_index.slot[h] = id + 1;
    }
}

static int cmp_u32(const void *x, const void *y) {
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return (a > b) - (a < b);
}

/* The id of the set of n distinct stacks (sorted here); -1 when out of memory. */
static int64_t set_of(automaton *a, uint32_t *items, uint32_t n) {
    qsort(items, n, sizeof *items, cmp_u32);
    uint32_t h = set_hash(items, n) & a->set_index.mask;
    for (uint32_t id; (id = a->set_index.slot[h]) != 0; h = (h + 1) & a->set_index.mask)
        if (a->set_len[id - 1] == n && !memcmp(a->items + a->set_first[id - 1], items, (size_t)n * sizeof *items)) return id - 1;
    uint32_t mask = a->set_index.mask, cap = a->cap_sets;
    if (a->n_items + n > SIZE_MAX / 8) return -1;
    if (a->n_items + n > a->cap_items) {
        size_t c = a->cap_items ? a->cap_items : 256;
        while (c < a->n_items + n) c *= 2;
        uint32_t *q = realloc(a->items, c * sizeof *q);
        if (!q) return -1;
        a->items = q, a->cap_items = c;
    }
    if (!reserve((void **)&a->set_first, &a->cap_sets, a->n_sets + 1, sizeof *a->set_first)) return -1;
    if (cap != a->cap_sets) {
        uint32_t *q = realloc(a->set_len, (size_t)a->cap_sets * sizeof *q);
        if (!q) return -1;
        a->set_len = q;
    }
    if (!table_grow(&a->set_index, a->n_sets)) return -1;
    uint32_t id = a->n_sets++;
    a->set_first[id] = (uint32_t)a->n_items, a->set_len[id] = n;
    memcpy(a->items + a->n_items, items, (size_t)n * sizeof *items);
    a->n_items += n;
    if (mask != a->set_index.mask) set_reindex(a);
    else a->set_index.slot[h] = id + 1;
    return id;
}

/* --- advancing --------------------------------------------------------- */

/* A new generation of `seen` marks (cleared when the counter wraps). */
static void new_generation(automaton *a) {
    if (++a->gen == 0) {
        memset(a->seen, 0, (size_t)a->n_stk * sizeof *a->seen);
        a->gen = 1;
    }
}

static bool push_work(automaton *a, uint32_t *n_work, uint32_t id) {
    if (a->oom) return false;
    if (a->seen[id] == a->gen) return true; /* already reached by another path */
    a->seen[id] = a->gen;
    if (!reserve((void **)&a->work, &a->cap_work, *n_work + 1, sizeof *a->work)) return a->oom = true, false;
    a->work[(*n_work)++] = id;
    return true;
}

static bool ends_alternative(const g4_grammar *g, uint32_t pos) {
    return g->elems[pos].type == G4_GE_END || g->elems[pos].type == G4_GE_ALT;
}

/* The stack that continues after the element at pos of stack below rest. */
static uint32_t after(automaton *a, uint32_t pos, uint32_t rest) {
    return ends_alternative(a->g, pos + 1) ? rest : stack_of(a, pos + 1, rest);
}

/* Expands the stacks in a->work until every top is a character class (or
 * the stack is empty), then interns the result. DEAD when nothing is left,
 * or when the stacks explode (a->overflow) or memory runs out (a->oom). */
static int32_t expand(automaton *a, uint32_t n_work) {
    const g4_grammar *g = a->g;
    uint32_t n_out = 0, visited = 0;
    while (n_work && !a->oom) {
        uint32_t id = a->work[--n_work];
        if (++visited > 16 * G4_GRAMMAR_MAX_STACKS) return a->overflow = true, DEAD;
        const g4_gelem *top = id ? &g->elems[a->stk[id].pos] : NULL;
        if (!top || top->type == G4_GE_CHARS) {
            if (n_out == G4_GRAMMAR_MAX_STACKS) return a->overflow = true, DEAD;
            if (!reserve((void **)&a->out, &a->cap_out, n_out + 1, sizeof *a->out)) return a->oom = true, DEAD;
            a->out[n_out++] = id;
            continue;
        }
        uint32_t base = after(a, a->stk[id].pos, a->stk[id].rest); /* where the rule returns to */
        for (uint32_t p = g->rule_start[top->value];; p++) { /* each alternative of the rule */
            bool empty = ends_alternative(g, p);
            if (!push_work(a, &n_work, empty ? base : stack_of(a, p, base))) break;
            while (!ends_alternative(g, p)) p++;
            if (g->elems[p].type == G4_GE_END) break;
        }
    }
    if (a->oom || !n_out) return DEAD;
    int64_t set = set_of(a, a->out, n_out);
    if (set < 0) return a->oom = true, DEAD;
    return (int32_t)set;
}

/* The set after code point cp. */
static int32_t advance(automaton *a, uint32_t set, uint32_t cp) {
    const g4_grammar *g = a->g;
    uint32_t n_work = 0;
    new_generation(a);
    for (uint32_t i = 0; i < a->set_len[set]; i++) {
        uint32_t id = a->items[a->set_first[set] + i];
        if (id && g4_gclass_has(g, g->elems[a->stk[id].pos].value, cp) &&
            !push_work(a, &n_work, after(a, a->stk[id].pos, a->stk[id].rest)))
            return DEAD;
    }
    return expand(a, n_work);
}

/* --- matcher states ---------------------------------------------------- */

static uint32_t state_hash(gstate s) { return mix(mix(mix(mix(3, s.set), s.value), s.need), s.size); }

static void state_reindex(automaton *a) {
    for (uint32_t id = 0; id < a->n_st; id++) {
        uint32_t h = state_hash(a->st[id]) & a->st_index.mask;
        while (a->st_index.slot[h]) h = (h + 1) & a->st_index.mask;
        a->st_index.slot[h] = id + 1;
    }
}

static int32_t state_of(automaton *a, gstate s) {
    uint32_t h = state_hash(s) & a->st_index.mask;
    for (uint32_t id; (id = a->st_index.slot[h]) != 0; h = (h + 1) & a->st_index.mask)
        if (a->st[id - 1].set == s.set && a->st[id - 1].value == s.value && a->st[id - 1].need == s.need &&
            a->st[id - 1].size == s.size)
            return (int32_t)id - 1;
    uint32_t mask = a->st_index.mask, cap = a->cap_st;
    if (a->n_st >= INT32_MAX / 256 || !reserve((void **)&a->st, &a->cap_st, a->n_st + 1, sizeof *a->st))
        return a->oom = true, DEAD;
    if (cap != a->cap_st) {
        int32_t *t = realloc(a->trans, (size_t)a->cap_st * 256 * sizeof *t);
        if (!t) return a->oom = true, DEAD;
        a->trans = t;
    }
    if (!table_grow(&a->st_index, a->n_st)) return a->oom = true, DEAD;
    uint32_t id = a->n_st++;
    a->st[id] = s;
    for (int b = 0; b < 256; b++) a->trans[(size_t)id * 256 + b] = UNKNOWN;
    if (mask != a->st_index.mask) state_reindex(a);
    else a->st_index.slot[h] = id + 1;
    return (int32_t)id;
}

/* After the lead byte or a continuation byte of an unfinished character
 * of `size` bytes: alive while some stack admits a code point that starts
 * this way (and that UTF-8 may encode in that many bytes: no overlong
 * forms, nothing past U+10FFFF). */
static int32_t partial(automaton *a, uint32_t set, uint32_t value, uint32_t need, uint32_t size) {
    static const uint32_t smallest[5] = {0, 0, 0x80, 0x800, 0x10000};
    uint32_t lo = value << (6 * need), hi = lo | ((1u << (6 * need)) - 1);
    if (lo < smallest[size]) lo = smallest[size];
    if (hi > 0x10ffff) hi = 0x10ffff;
    for (uint32_t i = 0; lo <= hi && i < a->set_len[set]; i++) {
        uint32_t id = a->items[a->set_first[set] + i];
        if (id && g4_gclass_meets(a->g, a->g->elems[a->stk[id].pos].value, lo, hi))
            return state_of(a, (gstate){set, value, need, size});
    }
    return DEAD;
}

static uint32_t moved_hash(uint32_t set, uint64_t admitted) {
    return mix(mix(mix(4, set), (uint32_t)admitted), (uint32_t)(admitted >> 32));
}

/* The state after a whole character cp: through the (set, admitted) cache
 * when the set is small enough for a 64-bit mask. */
static int32_t complete(automaton *a, uint32_t set, uint32_t cp) {
    uint32_t n = a->set_len[set];
    uint64_t admitted = 0;
    if (n <= 64) {
        for (uint32_t i = 0; i < n; i++) {
            uint32_t id = a->items[a->set_first[set] + i];
            if (id && g4_gclass_has(a->g, a->g->elems[a->stk[id].pos].value, cp)) admitted |= (uint64_t)1 << i;
        }
        if (!admitted) return DEAD;
        for (uint32_t h = moved_hash(set, admitted) & a->moved_mask; a->moved && a->moved[h].to != UNKNOWN;
             h = (h + 1) & a->moved_mask)
            if (a->moved[h].set == set && a->moved[h].admitted == admitted) return a->moved[h].to;
    }
    int32_t next = advance(a, set, cp);
    int32_t to = next == DEAD ? DEAD : state_of(a, (gstate){(uint32_t)next, 0, 0, 0});
    if (n > 64 || a->overflow || a->oom) return to;
    if ((uint64_t)(a->n_moved + 1) * 2 > (uint64_t)a->moved_mask + 1 || !a->moved) { /* grow and re-insert */
        uint32_t size = a->moved ? (a->moved_mask + 1) * 2 : 256;
        struct moved *m = malloc((size_t)size * sizeof *m);
        if (!m) return to;
        for (uint32_t i = 0; i < size; i++) m[i].to = UNKNOWN;
        for (uint32_t i = 0; a->moved && i <= a->moved_mask; i++) {
            if (a->moved[i].to == UNKNOWN) continue;
            uint32_t h = moved_hash(a->moved[i].set, a->moved[i].admitted) & (size - 1);
            while (m[h].to != UNKNOWN) h = (h + 1) & (size - 1);
            m[h] = a->moved[i];
        }
        free(a->moved);
        a->moved = m, a->moved_mask = size - 1;
    }
    uint32_t h = moved_hash(set, admitted) & a->moved_mask;
    while (a->moved[h].to != UNKNOWN) h = (h + 1) & a->moved_mask;
    a->moved[h] = (struct moved){admitted, set, to};
    a->n_moved++;
    return to;
}

static int32_t step_slow(automaton *a, int32_t from, uint8_t b) {
    gstate s = a->st[from];
    int32_t to = DEAD;
    a->overflow = a->oom = false;
    if (s.need == 0) {
        if (b < 0x80) to = complete(a, s.set, b);
        else if (b >= 0xc2 && b <= 0xdf) to = partial(a, s.set, b & 0x1fu, 1, 2);
        else if (b >= 0xe0 && b <= 0xef) to = partial(a, s.set, b & 0x0fu, 2, 3);
        else if (b >= 0xf0 && b <= 0xf4) to = partial(a, s.set, b & 0x07u, 3, 4);
    } else if ((b & 0xc0) == 0x80) {
        uint32_t v = s.value << 6 | (b & 0x3fu);
        static const uint32_t smallest[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (s.need > 1) to = partial(a, s.set, v, s.need - 1, s.size);
        else if (v >= smallest[s.size] && v <= 0x10ffff) to = complete(a, s.set, v);
    }
    /* an overflow or a failed allocation is not cached: it is an error, not a refusal */
    if (!a->overflow && !a->oom) a->trans[(size_t)from * 256 + b] = to;
    return to;
}

static inline int32_t step(automaton *a, int32_t from, uint8_t b) {
    int32_t to = a->trans[(size_t)from * 256 + b];
    return to != UNKNOWN ? to : step_slow(a, from, b);
}

static bool accepting(const automaton *a, int32_t s) {
    const gstate *st = &a->st[s];
    return st->need == 0 && a->set_len[st->set] && a->items[a->set_first[st->set]] == 0;
}

static void automaton_free(automaton *a) {
    if (!a) return;
    free(a->stk), free(a->stk_index.slot);
    free(a->items), free(a->set_first), free(a->set_len), free(a->set_index.slot);
    free(a->st), free(a->trans), free(a->st_index.slot);
    free(a->work), free(a->out), free(a->seen);
    free(a->moved);
    for (int i = 0; i < MASK_CACHE; i++) free(a->masks[i].bits);
    free(a);
}

static automaton *automaton_new(const g4_grammar *g) {
    automaton *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->g = g;
    a->refs = 1;
    if (!table_grow(&a->stk_index, 0) || !table_grow(&a->set_index, 0) || !table_grow(&a->st_index, 0) ||
        !reserve((void **)&a->stk, &a->cap_stk, 1, sizeof *a->stk) ||
        !reserve((void **)&a->seen, &a->cap_seen, 1, sizeof *a->seen)) {
        automaton_free(a);
        return NULL;
    }
    a->stk[0] = (gstack){0, 0}; /* the empty stack */
    a->seen[0] = 0;
    a->n_stk = 1;
    return a;
}

/* A fresh cache holding only state s of a (the old one had grown too big). */
static automaton *automaton_restart(const automaton *a, int32_t s, int32_t *new_s) {
    automaton *b = automaton_new(a->g);
    if (!b) return NULL;
    gstate st = a->st[s];
    uint32_t n = a->set_len[st.set], depth_cap = 0, *chain = NULL;
    uint32_t *items = malloc(((size_t)n + 1) * sizeof *items);
    for (uint32_t i = 0; items && i < n && !b->oom; i++) { /* each stack again, bottom first */
        uint32_t depth = 0;
        for (uint32_t id = a->items[a->set_first[st.set] + i]; id; id = a->stk[id].rest) {
            if (!reserve((void **)&chain, &depth_cap, depth + 1, sizeof *chain)) b->oom = true;
            if (b->oom) break;
            chain[depth++] = a->stk[id].pos;
        }
        uint32_t id = 0;
        while (depth && !b->oom) id = stack_of(b, chain[--depth], id);
        items[i] = id;
    }
    int64_t set = items && !b->oom ? set_of(b, items, n) : -1;
    free(items), free(chain);
    *new_s = set < 0 ? DEAD : state_of(b, (gstate){(uint32_t)set, st.value, st.need, st.size});
    if (*new_s == DEAD) {
        automaton_free(b);
        return NULL;
    }
    return b;
}

/* --- the public interface ---------------------------------------------- */

g4_grammar_state *g4_grammar_state_new(const g4_grammar *g, char *err) {
    g4_grammar_state *st = calloc(1, sizeof *st);
    automaton *a = automaton_new(g);
    if (!st || !a) {
        free(st), automaton_free(a);
        g4_error(err, "grammar", "out of memory");
        return NULL;
    }
    st->a = a;
    uint32_t n_work = 0;
    new_generation(a);
    for (uint32_t p = g->rule_start[g->root];; p++) { /* each alternative of the root */
        push_work(a, &n_work, ends_alternative(g, p) ? 0 : stack_of(a, p, 0));
        while (!ends_alternative(g, p)) p++;
        if (g->elems[p].type == G4_GE_END) break;
    }
    int32_t set = expand(a, n_work);
    st->cur = set == DEAD ? DEAD : state_of(a, (gstate){(uint32_t)set, 0, 0, 0});
    if (st->cur == DEAD) {
        if (a->overflow) g4_error(err, "grammar", "the start rule opens more than %d parse stacks", G4_GRAMMAR_MAX_STACKS);
        else g4_error(err, "grammar", "out of memory");
        g4_grammar_state_free(st);
        return NULL;
    }
    return st;
}

g4_grammar_state *g4_grammar_state_clone(const g4_grammar_state *st) {
    g4_grammar_state *c = malloc(sizeof *c);
    if (!c) return NULL;
    *c = *st;
    c->a->refs++;
    return c;
}

void g4_grammar_state_free(g4_grammar_state *st) {
    if (!st) return;
    if (--st->a->refs == 0) automaton_free(st->a);
    free(st);
}

static const char *token_bytes(const g4_grammar_vocab *gv, int32_t t, size_t *len) {
    *len = gv->off[t + 1] - gv->off[t];
    return gv->pool + gv->off[t];
}

/* The state after token t from s (DEAD if refused). */
static int32_t walk(automaton *a, int32_t s, const g4_grammar_vocab *gv, int32_t t) {
    size_t len;
    const char *p = token_bytes(gv, t, &len);
    for (size_t i = 0; i < len && s != DEAD; i++) s = step(a, s, (uint8_t)p[i]);
    return s;
}

bool g4_grammar_allows(const g4_grammar_state *st, const g4_grammar_vocab *gv, int32_t token) {
    if (token < 0 || token >= gv->n_tokens) return false;
    if (gv->kind[token] == G4_GTOK_EOG) return st->ended || accepting(st->a, st->cur);
    if (gv->kind[token] != G4_GTOK_TEXT || st->ended) return false;
    return walk(st->a, st->cur, gv, token) != DEAD;
}

/* The tokens allowed from state s, as a bitmap: a depth-first walk of the
 * trie where at[d] is the state after the first d bytes of the path, and
 * a node no state survives ends the walk of its whole subtree. */
static bool allowed_tokens(automaton *a, int32_t s, const g4_grammar_vocab *gv, uint64_t *bits) {
    int32_t *at = malloc(((size_t)gv->max_depth + 1) * sizeof *at);
    if (!at) return false;
    at[0] = s;
    const g4_gnode *nodes = gv->nodes;
    const uint32_t *node_tok = gv->node_tok;
    const int32_t *order = gv->order;
    const int32_t *trans = a->trans;
    for (uint32_t i = 0; i < gv->n_nodes;) {
        g4_gnode n = nodes[i];
        int32_t from = at[n.depth - 1];
        int32_t to = trans[(size_t)from * 256 + n.byte];
        if (to == UNKNOWN) {
            to = step_slow(a, from, n.byte);
            trans = a->trans; /* the table may have moved */
        }
        if (to < 0) {
            i = n.skip;
            continue;
        }
        at[n.depth] = to;
        for (uint32_t k = node_tok[i]; k < node_tok[i + 1]; k++) bits[order[k] >> 6] |= (uint64_t)1 << (order[k] & 63);
        i++;
    }
    free(at);
    if (accepting(a, s))
        for (int32_t i = 0; i < gv->n_eog; i++) bits[gv->eog[i] >> 6] |= (uint64_t)1 << (gv->eog[i] & 63);
    return true;
}

void g4_grammar_mask(const g4_grammar_state *st, const g4_grammar_vocab *gv, float *logits) {
    automaton *a = st->a;
    if (st->ended) { /* only the end again */
        for (int32_t t = 0; t < gv->n_tokens; t++)
            if (gv->kind[t] != G4_GTOK_EOG) logits[t] = -INFINITY;
        return;
    }
    size_t words = ((size_t)gv->n_tokens + 63) / 64;
    const uint64_t *bits = NULL;
    for (int i = 0; i < MASK_CACHE; i++)
        if (a->masks[i].bits && a->masks[i].serial == gv->serial && a->masks[i].state == st->cur) bits = a->masks[i].bits;
    if (!bits) { /* compute into the oldest cache slot */
        struct mask_cache *m = &a->masks[a->next_mask];
        uint64_t *b = realloc(m->bits, words * sizeof *b);
        if (b) {
            m->bits = b, m->serial = gv->serial, m->state = DEAD;
            memset(b, 0, words * sizeof *b);
            if (allowed_tokens(a, st->cur, gv, b)) {
                m->state = st->cur;
                a->next_mask = (a->next_mask + 1) % MASK_CACHE;
                bits = b;
            }
        }
    }
    for (size_t w = 0; w < words; w++) {
        uint64_t keep = bits ? bits[w] : 0; /* nothing when out of memory */
        size_t end = w * 64 + 64 < (size_t)gv->n_tokens ? w * 64 + 64 : (size_t)gv->n_tokens;
        if (keep == ~(uint64_t)0) continue;
        if (keep == 0)
            for (size_t t = w * 64; t < end; t++) logits[t] = -INFINITY;
        else
            for (size_t t = w * 64; t < end; t++)
                if (!(keep >> (t & 63) & 1)) logits[t] = -INFINITY;
    }
}

int g4_grammar_accept(g4_grammar_state *st, const g4_grammar_vocab *gv, int32_t token, char *err) {
    if (token < 0 || token >= gv->n_tokens)
        return g4_error(err, "grammar", "token %d is outside the vocabulary of %d", token, gv->n_tokens);
    automaton *a = st->a;
    if (gv->kind[token] == G4_GTOK_EOG) {
        if (!st->ended && !accepting(a, st->cur))
            return g4_error(err, "grammar", "end of generation (token %d) before the grammar is complete", token);
        st->ended = true;
        return 0;
    }
    size_t len;
    const char *p = token_bytes(gv, token, &len);
    if (st->ended) return g4_error(err, "grammar", "token %d after the end of generation", token);
    if (gv->kind[token] != G4_GTOK_TEXT)
        return g4_error(err, "grammar", "token %d is a control token or renders as nothing; the grammar only matches text", token);
    int32_t s = walk(a, st->cur, gv, token);
    if (s == DEAD) {
        if (a->overflow)
            return g4_error(err, "grammar", "more than %d parse stacks after token %d: the grammar is too ambiguous",
                            G4_GRAMMAR_MAX_STACKS, token);
        if (a->oom) return g4_error(err, "grammar", "out of memory");
        char shown[41]; /* the token's start, on one line */
        size_t n = len < 40 ? len : 40;
        for (size_t i = 0; i < n; i++) shown[i] = (unsigned char)p[i] < 0x20 ? '?' : p[i];
        shown[n] = 0;
        return g4_error(err, "grammar", "token %d (\"%s\") is not allowed here", token, shown);
    }
    st->cur = s;
    if (a->n_st > MAX_CACHED_STATES && a->refs == 1) {
        int32_t fresh;
        automaton *b = automaton_restart(a, s, &fresh);
        if (b) { /* else keep the big cache: still correct */
            automaton_free(a);
            st->a = b, st->cur = fresh;
        }
    }
    return 0;
}

bool g4_grammar_finished(const g4_grammar_state *st) {
    const automaton *a = st->a;
    return st->ended || (accepting(a, st->cur) && a->set_len[a->st[st->cur].set] == 1);
}
