/* Token ids -> text: the piece of one token (llama.cpp's token_to_piece
 * without the space clean-up of llama_detokenize, so decoding inverts
 * encoding exactly) and a streaming detokenizer that only cuts the output
 * at UTF-8 character boundaries. */
#include <string.h>

#include "tokenizer/vocab_impl.h"

static size_t copy_piece(const char *src, size_t n, char *buf, size_t cap) {
    if (n && n <= cap) memcpy(buf, src, n);
    return n;
}

static int hex_value(char c) {
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

size_t g4_token_to_piece(const g4_vocab *v, int32_t id, bool render_special, char *buf, size_t cap) {
    if (id < 0 || id >= v->n) return 0;
    uint8_t attr = v->attr[id];
    size_t len;
    const char *t = g4_text_of(v, id, &len);
    if (attr & (G4_ATTR_CONTROL | G4_ATTR_UNKNOWN)) return render_special ? copy_piece(t, len, buf, cap) : 0;
    if (attr & G4_ATTR_USER_DEFINED) return copy_piece(t, len, buf, cap);
    if (attr & G4_ATTR_BYTE) { /* validated as <0xHH> at load */
        char byte = (char)(hex_value(t[3]) * 16 + hex_value(t[4]));
        return copy_piece(&byte, 1, buf, cap);
    }
    if (!(attr & G4_ATTR_NORMAL)) return 0; /* unused and undefined tokens render as nothing */
    size_t n = 0;
    for (size_t i = 0; i < len; i++) { /* U+2581 -> ' ' */
        bool space = i + 2 < len && memcmp(t + i, "\xe2\x96\x81", 3) == 0;
        if (n < cap) buf[n] = space ? ' ' : t[i];
        n++;
        if (space) i += 2;
    }
    return n;
}

/* Whether b is a valid k-th byte (k >= 1) of a sequence led by lead. */
static bool continues(unsigned char lead, size_t k, unsigned char b) {
    if (k == 1) {
        if (lead == 0xe0) return b >= 0xa0 && b <= 0xbf; /* no overlong forms */
        if (lead == 0xed) return b >= 0x80 && b <= 0x9f; /* no surrogates */
        if (lead == 0xf0) return b >= 0x90 && b <= 0xbf;
        if (lead == 0xf4) return b >= 0x80 && b <= 0x8f; /* <= U+10FFFF */
    }
    return b >= 0x80 && b <= 0xbf;
}

static size_t sequence_len(unsigned char lead) {
    if (lead >= 0xc2 && lead <= 0xdf) return 2;
    if (lead >= 0xe0 && lead <= 0xef) return 3;
    if (lead >= 0xf0 && lead <= 0xf4) return 4;
    return 1; /* ASCII, or a byte that cannot start a sequence */
}

/* Where the trailing incomplete-but-still-valid sequence of b starts (n if
 * there is none). Everything before it is complete characters or bytes
 * that can never become part of one. */
static size_t complete_prefix(const unsigned char *b, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t need = sequence_len(b[i]), k = 1;
        while (k < need && i + k < n && continues(b[i], k, b[i + k])) k++;
        if (k == need) i += need;    /* a whole character (or a single byte) */
        else if (i + k == n) return i; /* valid so far, cut off by the end */
        else i++;                    /* broken: pass the lead byte through */
    }
    return n;
}

void g4_detok_init(g4_detok *d, const g4_vocab *v, bool render_special) {
    d->vocab = v;
    d->render_special = render_special;
    d->n_held = 0;
}

size_t g4_detok_push(g4_detok *d, int32_t id, char *out, size_t cap) {
    size_t piece = g4_token_to_piece(d->vocab, id, d->render_special, NULL, 0);
    size_t total = d->n_held + piece;
    if (total > cap) return total;
    memcpy(out, d->held, d->n_held);
    g4_token_to_piece(d->vocab, id, d->render_special, out + d->n_held, piece);
    size_t done = complete_prefix((const unsigned char *)out, total);
    d->n_held = total - done; /* at most 3 bytes */
    memcpy(d->held, out + done, d->n_held);
    return done;
}

size_t g4_detok_flush(g4_detok *d, char *out, size_t cap) {
    size_t n = d->n_held;
    if (n > cap) return n;
    memcpy(out, d->held, n);
    d->n_held = 0;
    return n;
}
