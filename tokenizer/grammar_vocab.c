/* The vocabulary as the grammar matcher sees it: each token's decoded bytes
 * (g4_token_to_piece, what the user reads), and a byte trie of them laid
 * out depth first, so that g4_grammar_mask tests a prefix shared by many
 * tokens once and drops a whole subtree at the first byte nothing admits. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/grammar_impl.h"
#include "tokenizer/tokenizer.h"

typedef struct piece {
    uint64_t head; /* the first 8 bytes, big-endian, zero-padded: most comparisons end here */
    const char *p;
    size_t len;
    int32_t id;
} piece;

static int cmp_piece(const void *x, const void *y) {
    const piece *a = x, *b = y;
    if (a->head != b->head) return a->head < b->head ? -1 : 1;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->p, b->p, n);
    if (c) return c;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

void g4_grammar_vocab_free(g4_grammar_vocab *gv) {
    if (!gv) return;
    free(gv->kind), free(gv->pool), free(gv->off);
    free(gv->nodes), free(gv->node_tok), free(gv->order);
    free(gv->eog);
    free(gv);
}

/* Nodes for the sorted text pieces: each piece adds a node per byte past
 * what it shares with the one before it. */
static bool build_trie(g4_grammar_vocab *gv, const piece *sorted, int32_t n_text, size_t total_bytes) {
    gv->nodes = malloc((total_bytes + 1) * sizeof *gv->nodes);
    uint32_t *end_node = malloc(((size_t)n_text + 1) * sizeof *end_node);
    uint32_t *path = malloc(((size_t)gv->max_depth + 1) * sizeof *path); /* node at each depth of the current path */
    uint32_t *open = malloc(((size_t)gv->max_depth + 1) * sizeof *open); /* nodes whose subtree is not closed yet */
    bool ok = gv->nodes && end_node && path && open;
    uint32_t n = 0, n_open = 0;
    for (int32_t k = 0; ok && k < n_text; k++) {
        const piece *t = &sorted[k];
        size_t lcp = 0;
        if (k) {
            const piece *prev = &sorted[k - 1];
            while (lcp < t->len && lcp < prev->len && t->p[lcp] == prev->p[lcp]) lcp++;
        }
        for (size_t d = lcp + 1; d <= t->len; d++) {
            while (n_open && gv->nodes[open[n_open - 1]].depth >= d) gv->nodes[open[--n_open]].skip = n;
            gv->nodes[n] = (g4_gnode){0, (uint16_t)d, (uint8_t)t->p[d - 1]};
            open[n_open++] = n;
            path[d] = n++;
        }
        end_node[k] = path[t->len];
    }
    while (ok && n_open) gv->nodes[open[--n_open]].skip = n;
    gv->n_nodes = n;
    gv->node_tok = ok ? calloc((size_t)n + 1, sizeof *gv->node_tok) : NULL;
    ok = ok && gv->node_tok;
    /* node_tok[i] = number of pieces ending before node i (pieces end in node order) */
    for (int32_t k = 0; ok && k < n_text; k++) gv->node_tok[end_node[k] + 1]++;
    for (uint32_t i = 0; ok && i < n; i++) gv->node_tok[i + 1] += gv->node_tok[i];
    free(end_node), free(path), free(open);
    return ok;
}

g4_grammar_vocab *g4_grammar_vocab_from_pieces(const char *const *tokens, const size_t *lens, const uint8_t *kinds,
                                               int32_t n, char *err) {
    g4_grammar_vocab *gv = calloc(1, sizeof *gv);
    size_t total = 0;
    int32_t n_text = 0;
    for (int32_t i = 0; i < n; i++) {
        if (kinds[i] != G4_GTOK_TEXT) continue;
        if (lens[i] > UINT16_MAX) {
            g4_grammar_vocab_free(gv);
            g4_error(err, "grammar", "token %d is %zu bytes long, more than %d", i, lens[i], UINT16_MAX);
            return NULL;
        }
        total += lens[i];
        n_text++;
    }
    piece *sorted = malloc(((size_t)n_text + 1) * sizeof *sorted);
    bool ok = gv && sorted;
    if (ok) {
        gv->n_tokens = n;
        gv->kind = malloc((size_t)n + 1);
        gv->pool = malloc(total + 1);
        gv->off = malloc(((size_t)n + 1) * sizeof *gv->off);
        gv->order = malloc(((size_t)n_text + 1) * sizeof *gv->order);
        gv->eog = malloc(((size_t)n + 1) * sizeof *gv->eog);
        ok = gv->kind && gv->pool && gv->off && gv->order && gv->eog;
    }
    size_t at = 0;
    for (int32_t i = 0, k = 0; ok && i < n; i++) {
        gv->kind[i] = kinds[i];
        gv->off[i] = at;
        if (kinds[i] == G4_GTOK_EOG) gv->eog[gv->n_eog++] = i;
        else if (kinds[i] == G4_GTOK_TEXT) {
            memcpy(gv->pool + at, tokens[i], lens[i]);
            uint64_t head = 0;
            for (size_t j = 0; j < 8; j++) head = head << 8 | (j < lens[i] ? (uint8_t)tokens[i][j] : 0);
            sorted[k++] = (piece){head, gv->pool + at, lens[i], i};
            at += lens[i];
            if (lens[i] > gv->max_depth) gv->max_depth = (uint32_t)lens[i];
        }
    }
    if (ok) {
        static atomic_uint_fast64_t serials;
        gv->off[n] = at;
        gv->serial = atomic_fetch_add(&serials, 1) + 1;
    }
    if (ok) qsort(sorted, (size_t)n_text, sizeof *sorted, cmp_piece);
    for (int32_t k = 0; ok && k < n_text; k++) gv->order[k] = sorted[k].id;
    ok = ok && build_trie(gv, sorted, n_text, total);
    free(sorted);
    if (!ok) {
        g4_grammar_vocab_free(gv);
        g4_error(err, "grammar", "out of memory for a vocabulary of %d tokens", n);
        return NULL;
    }
    return gv;
}

g4_grammar_vocab *g4_grammar_vocab_new(const struct g4_vocab *v, char *err) {
    int32_t n = g4_vocab_size(v);
    const char **tokens = malloc(((size_t)n + 1) * sizeof *tokens);
    size_t *lens = malloc(((size_t)n + 1) * sizeof *lens);
    uint8_t *kinds = malloc((size_t)n + 1);
    size_t total = 0;
    for (int32_t i = 0; lens && i < n; i++) total += lens[i] = g4_token_to_piece(v, i, false, NULL, 0);
    char *bytes = malloc(total + 1);
    g4_grammar_vocab *gv = NULL;
    if (tokens && lens && kinds && bytes) {
        size_t at = 0;
        for (int32_t i = 0; i < n; i++) {
            tokens[i] = bytes + at;
            at += g4_token_to_piece(v, i, false, bytes + at, lens[i]);
            /* control tokens constrain nothing and match nothing; empty pieces cannot advance the grammar */
            kinds[i] = g4_vocab_is_eog(v, i) ? G4_GTOK_EOG
                       : g4_vocab_is_control(v, i) || lens[i] == 0 ? G4_GTOK_NEVER
                                                                   : G4_GTOK_TEXT;
        }
        gv = g4_grammar_vocab_from_pieces(tokens, lens, kinds, n, err);
    } else {
        g4_error(err, "grammar", "out of memory for a vocabulary of %d tokens", n);
    }
    free(tokens), free(lens), free(kinds), free(bytes);
    return gv;
}
