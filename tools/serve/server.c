#include "tools/serve/server.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/cli.h" /* cli_session_env: GEMMA4_DUMP */

struct srv_job {
    srv *s;
    int refs; /* the caller's and the scheduler's */
    int32_t *ids, n_ids, max_tokens;
    gemma4_sampler *smp;
    char *stop[OAI_MAX_STOP];
    int n_stop;
    size_t max_hold; /* longest stop string - 1: text that may still become one */
    bool ignore_eos, render_special;
    oai_call_guard guard; /* a forced tool call (guard.text empty: none) */
    srv_job *leader;      /* n > 1: the first choice, whose prompt this one forks (held until admitted) */
    int32_t top_lp;       /* logprobs: alternatives per token; -1 for no logprobs */
    oai_logprobs lp;      /* of the generated tokens */
    size_t lp_taken;      /* entries handed to the caller */
    bool call_done;       /* its "<tool_call|>" came: the job ends */
    uint64_t kv_charge;   /* KV bytes it may come to hold */
    bool cancelled, done;
    const char *finish;
    oai_error error;  /* status 0 unless it failed */
    jw text;          /* generated so far, a stop string and what follows cut off */
    size_t ready;     /* bytes of text that can no longer change */
    size_t taken;     /* bytes of text handed to the caller */
    oai_usage usage;
    double t_admit, t_first;
    pthread_cond_t cond;
    srv_job *next; /* in the queue */
};

typedef struct slot {
    srv_job *job;     /* NULL: free; its sequence keeps the last tokens for reuse */
    int32_t n_fed;    /* prompt tokens in the cache */
    int32_t last;     /* sampled token, fed at the next step */
    bool generating;
    g4_detok detok;
} slot;

#define GUARD_TOP 256 /* the most likely tokens checked against a forced call first */

struct srv {
    const gemma4_model *m;
    const g4_vocab *v;
    gemma4_session *sess;
    srv_params p;
    int32_t n_vocab;
    int32_t *eog, n_eog; /* the end-of-generation ids (a forced call bans them) */
    int32_t guard_top[GUARD_TOP]; /* a forced call's candidates, and their logits */
    float guard_fit[GUARD_TOP];
    unsigned char *first_byte; /* of each token's text (control tokens: 0, always checked) */
    slot *slots;
    char *piece; /* one token's bytes */
    size_t piece_cap;
    /* batch of one step */
    int32_t *tok, *seq, *row_slot;
    bool *want;
    float *logits;
    int32_t *need, *take; /* per slot: prompt tokens left, and fed this step */
    bool *gen;
    int32_t first;        /* slot whose prompt is served first this step */
    /* -md: the generating slots that can speculate advance by one
     * gemma4_spec_step of their own after the batch of the others */
    gemma4_drafter *drafter;
    gemma4_spec *spec;
    int32_t draft_max;
    bool *spec_now; /* per slot: speculates this step */
    int32_t *spec_seq, *spec_tok, *spec_out, *spec_n_out;
    gemma4_sampler **spec_smp;
    gemma4_session_params sp;
    uint64_t kv_charged;  /* kv_charge of the jobs in slots */

    pthread_mutex_t mu;
    pthread_cond_t wake; /* work arrived or stop */
    pthread_t thread;
    bool stopping, started;
    srv_job *queue_head, *queue_tail;
    int32_t n_queued, n_active;
    /* metrics */
    uint64_t n_prompt_total, n_gen_total, n_requests;
    double t_prompt_total, t_gen_total;
    gemma4_kv_usage kv;
    int64_t kv_positions; /* tokens held by all sequences */
    gemma4_spec_stats drafts; /* -md: of all sequences */
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void job_unref(srv_job *j);

static void job_free(srv_job *j) {
    if (j->leader) job_unref(j->leader);
    oai_logprobs_free(&j->lp);
    free(j->ids);
    gemma4_sampler_free(j->smp);
    for (int i = 0; i < j->n_stop; i++) free(j->stop[i]);
    jw_free(&j->text);
    oai_call_guard_free(&j->guard);
    pthread_cond_destroy(&j->cond);
    free(j);
}

/* Drops one reference; the caller holds s->mu (or j was never queued). */
static void job_unref(srv_job *j) {
    if (--j->refs == 0) job_free(j);
}

/* ---------------------------------------------------------------- jobs */

/* Marks the text final up to where no stop string can still begin, or cuts
 * it at the first stop string (true: the job is over). */
static bool apply_stop(srv_job *j, size_t from) {
    const size_t len = j->text.len;
    size_t cut = len;
    for (int i = 0; i < j->n_stop; i++) {
        size_t n = strlen(j->stop[i]);
        size_t start = from > n ? from - n + 1 : 0;
        char *hit = len >= start + n ? memmem(j->text.s + start, len - start, j->stop[i], n) : NULL;
        if (hit && (size_t)(hit - j->text.s) < cut) cut = (size_t)(hit - j->text.s);
    }
    if (cut < len) {
        j->text.s[j->text.len = cut] = 0;
        j->ready = cut;
        return true;
    }
    size_t hold = 0; /* longest tail of the text that starts a stop string */
    for (int i = 0; i < j->n_stop; i++)
        for (size_t k = strlen(j->stop[i]) - 1; k > hold; k--)
            if (k <= len && !memcmp(j->text.s + len - k, j->stop[i], k)) {
                hold = k;
                break;
            }
    j->ready = len - hold;
    return false;
}

/* Ends the job of slot i (finish NULL with j->error set: failed). The
 * sequence stays for prefix reuse unless the job was cancelled or failed.
 * Caller holds s->mu. */
static void finish_slot(srv *s, int32_t i, const char *finish) {
    slot *sl = &s->slots[i];
    srv_job *j = sl->job;
    if (sl->generating) {
        size_t n = g4_detok_flush(&sl->detok, s->piece, s->piece_cap);
        jw_raw(&j->text, s->piece, n);
    }
    j->ready = j->text.len;
    double t = now_s();
    j->usage.t_prompt_ms = 1e3 * ((j->t_first ? j->t_first : t) - j->t_admit);
    j->usage.t_gen_ms = j->t_first ? 1e3 * (t - j->t_first) : 0;
    j->finish = finish;
    j->done = true;
    if (j->text.oom && !j->error.status) oai_error_set(&j->error, 500, "out of memory");
    if (j->cancelled || j->error.status) gemma4_seq_remove(s->sess, i);
    pthread_cond_broadcast(&j->cond);
    sl->job = NULL;
    sl->generating = false;
    s->n_active--;
    s->kv_charged -= j->kv_charge;
    job_unref(j);
}

/* KV bytes a job may come to hold at n_pos positions: its sequence as the
 * engine's plan gives it, plus the sliding-window pages a prompt chunk
 * spans before the window moves on and those the checkpoints pin (they
 * are not in the plan). UINT64_MAX when the plan fails. */
static uint64_t kv_charge(const srv *s, int64_t n_pos) {
    gemma4_kv_plan plan;
    char err[G4_ERR_LEN];
    if (gemma4_kv_plan_get(s->m, &s->sp, n_pos, &plan, err)) return UINT64_MAX;
    const int64_t P = plan.page_size, chunk = (s->p.n_batch + P - 1) / P + 1, window = (plan.n_swa + P - 1) / P + 1;
    return plan.seq_bytes + (uint64_t)(chunk + G4_KV_CHECKPOINTS * window) * plan.page_bytes[G4_KV_SWA];
}

/* The job of choice `choice` of request r, not queued yet; NULL with e set. */
static srv_job *job_new(srv *s, const oai_request *r, const int32_t *ids, int32_t n, int32_t choice, uint64_t charge,
                        oai_error *e) {
    srv_job *j = calloc(1, sizeof *j);
    if (!j) return oai_error_set(e, 500, "out of memory"), NULL;
    pthread_cond_init(&j->cond, NULL);
    j->kv_charge = charge;
    j->s = s;
    j->refs = 2;
    j->n_ids = n;
    j->max_tokens = r->max_tokens;
    j->ignore_eos = r->ignore_eos;
    j->render_special = r->chat;
    j->top_lp = r->logprobs ? r->top_logprobs : -1;
    bool ok = (j->ids = malloc((size_t)n * sizeof *j->ids)) != NULL && oai_call_guard_init(&j->guard, r) == 0;
    for (int i = 0; ok && i < r->n_stop; i++) {
        ok = (j->stop[j->n_stop++] = strdup(r->stop[i])) != NULL;
        if (ok && strlen(r->stop[i]) > j->max_hold + 1) j->max_hold = strlen(r->stop[i]) - 1;
    }
    /* ignore_eos: the sampler bans the end-of-generation tokens, so the
     * distribution sampled from is the model's without them */
    gemma4_sampling sp = r->sampling;
    sp.ignore_eos = r->ignore_eos;
    if (!ok) return job_free(j), oai_error_set(e, 500, "out of memory"), NULL;
    memcpy(j->ids, ids, (size_t)n * sizeof *ids);
    sp.seed += (uint64_t)choice; /* each choice its own draws */
    char err[G4_ERR_LEN];
    j->smp = gemma4_sampler_init(s->m, &sp, err);
    if (!j->smp) return job_free(j), oai_error_set(e, 400, "%s", err), NULL;
    gemma4_sampler_accept(j->smp, ids, n); /* the prompt counts for the penalties, as in llama-server */
    jw_cstr(&j->text, "");
    j->usage.n_prompt = n;
    return j;
}

int srv_submit(srv *s, const oai_request *r, const int32_t *ids, int32_t n, srv_job **jobs, oai_error *e) {
    if (n <= 0 || n >= s->p.n_ctx)
        return oai_error_set(e, 400, "the prompt has %d tokens; the context holds %d (prompt and answer)", n, s->p.n_ctx), -1;
    if (!s->p.context_shift && r->max_tokens > s->p.n_ctx - n)
        return oai_error_set(e, 400, "the prompt (%d tokens) and max_tokens (%d) exceed the context of %d tokens", n,
                             r->max_tokens, s->p.n_ctx), -1;
    /* a speculative step may hold up to draft_max + 1 positions past the answer before rolling back */
    const int32_t extra = s->spec ? s->draft_max + 1 : 0;
    const int32_t n_pos = r->max_tokens >= 0 && r->max_tokens < s->p.n_ctx - n - extra ? n + r->max_tokens + extra : s->p.n_ctx;
    const uint64_t charge = s->p.kv_max_bytes ? kv_charge(s, n_pos) : 0;
    const int32_t n_choices = r->n_choices > 0 ? r->n_choices : 1;
    if (charge > s->p.kv_max_bytes / (uint64_t)n_choices)
        return oai_error_set(e, 400, "%d choices of %d positions (prompt and max_tokens) need %.1f MiB of KV cache; the cap is %.1f MiB",
                             n_choices, n_pos, (double)charge * n_choices / 1048576.0, s->p.kv_max_bytes / 1048576.0), -1;
    for (int32_t i = 0; i < n_choices; i++) {
        if (!(jobs[i] = job_new(s, r, ids, n, i, charge, e))) {
            while (i--) job_free(jobs[i]);
            return -1;
        }
        if (i) jobs[i]->leader = jobs[0], jobs[0]->refs++;
    }
    pthread_mutex_lock(&s->mu);
    if (s->stopping || s->n_queued >= s->p.queue_max) { /* the request counts as one, whatever its n */
        bool stopping = s->stopping;
        for (int32_t i = n_choices; i--;) job_free(jobs[i]); /* the followers first: they hold the leader */
        pthread_mutex_unlock(&s->mu);
        if (stopping) oai_error_set(e, 503, "the server is shutting down");
        else oai_error_set(e, 503, "all %d slots are busy and %d requests are waiting", s->p.n_parallel, s->p.queue_max);
        return -1;
    }
    for (int32_t i = 0; i < n_choices; i++) {
        srv_job *j = jobs[i];
        if (s->queue_tail) s->queue_tail->next = j;
        else s->queue_head = j;
        s->queue_tail = j;
        s->n_queued++;
    }
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int srv_job_wait(srv_job *j, jw *out, oai_logprobs *lp, int timeout_ms, const char **finish, oai_usage *u,
                 oai_error *e) {
    srv *s = j->s;
    pthread_mutex_lock(&s->mu);
    if (!j->done && j->ready == j->taken) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (long)timeout_ms * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&j->cond, &s->mu, &until);
    }
    jw_raw(out, j->text.s + j->taken, j->ready - j->taken);
    j->taken = j->ready;
    if (lp) oai_logprobs_push(lp, j->lp.v + j->lp_taken, j->lp.n - j->lp_taken);
    j->lp_taken = j->lp.n;
    bool done = j->done;
    if (done) {
        *finish = j->finish;
        *u = j->usage;
        *e = j->error;
        if (j->lp.oom && !e->status) oai_error_set(e, 500, "out of memory");
    }
    pthread_mutex_unlock(&s->mu);
    return done;
}

void srv_job_cancel(srv_job *j) {
    pthread_mutex_lock(&j->s->mu);
    j->cancelled = true;
    pthread_cond_signal(&j->s->wake);
    pthread_mutex_unlock(&j->s->mu);
}

void srv_job_release(srv_job *j) {
    srv *s = j->s;
    pthread_mutex_lock(&s->mu);
    j->cancelled = true;
    pthread_cond_signal(&s->wake);
    job_unref(j);
    pthread_mutex_unlock(&s->mu);
}

/* ---------------------------------------------------------------- scheduling */

/* Puts job j into free slot i: the slot (or a busy one, forked) sharing the
 * longest prefix with its prompt was chosen by the caller; keeps that much. */
static void admit(srv *s, srv_job *j) {
    const int32_t n_slot = s->p.n_parallel;
    int32_t best = -1, best_len = -1, src = -1, src_len = -1;
    for (int32_t i = 0; i < n_slot; i++) {
        int32_t l = gemma4_seq_common_prefix(s->sess, i, j->ids, j->n_ids - 1); /* the last is fed for its logits */
        if (!s->slots[i].job && l > best_len) best = i, best_len = l;
        if (s->slots[i].job && l > src_len) src = i, src_len = l;
    }
    char err[G4_ERR_LEN];
    if (src >= 0 && src_len > best_len && gemma4_seq_fork(s->sess, src, best, err) == 0) best_len = src_len;
    s->kv_charged += j->kv_charge;
    if (s->p.kv_max_bytes) { /* the cached sequences of free slots give way to the charged jobs */
        uint64_t held = s->kv_charged;
        for (int32_t i = 0; i < n_slot; i++)
            if (i != best && !s->slots[i].job && gemma4_seq_pos(s->sess, i) > 0) {
                held += kv_charge(s, gemma4_seq_pos(s->sess, i));
                if (held > s->p.kv_max_bytes) gemma4_seq_remove(s->sess, i);
            }
    }
    slot *sl = &s->slots[best];
    sl->job = j;
    sl->n_fed = gemma4_seq_truncate(s->sess, best, best_len);
    sl->generating = false;
    g4_detok_init(&sl->detok, s->v, j->render_special);
    j->usage.n_cached = sl->n_fed;
    j->t_admit = now_s();
    s->n_active++;
}

/* Appends sampled token id to slot i's job; true when the job is over.
 * pending: id is not fed yet and is the slot's next input (false: a kept
 * guess of a speculative step, already in the cache). */
static bool take_token(srv *s, int32_t i, int32_t id, bool pending, const char **finish) {
    slot *sl = &s->slots[i];
    srv_job *j = sl->job;
    if (!j->ignore_eos && g4_vocab_is_eog(s->v, id)) return *finish = "stop", true;
    j->usage.n_gen++;
    size_t from = j->text.len;
    size_t n = g4_detok_push(&sl->detok, id, s->piece, s->piece_cap);
    jw_raw(&j->text, s->piece, n);
    pthread_cond_broadcast(&j->cond);
    if (apply_stop(j, from) || j->call_done) return *finish = "stop", true;
    if (j->max_tokens >= 0 && j->usage.n_gen >= j->max_tokens) return *finish = "length", true;
    if (!pending) return false;
    const int32_t pos = gemma4_seq_pos(s->sess, i);
    if (pos + 1 >= s->p.n_ctx) {
        if (!s->p.context_shift) return *finish = "length", true;
        /* BOS and the n_keep tokens after it stay; half of the rest goes */
        const int32_t keep = s->p.n_keep < 0 ? j->n_ids : s->p.n_keep + 1 < pos ? s->p.n_keep + 1 : pos - 1;
        const int32_t discard = (pos - keep) / 2 > 0 ? (pos - keep) / 2 : 1;
        char err[G4_ERR_LEN];
        if (keep >= pos || gemma4_seq_shift(s->sess, i, keep, discard, err) < 0) {
            if (keep >= pos) snprintf(err, sizeof err, "context shift: --keep leaves nothing to discard");
            oai_error_set(&j->error, 500, "%s", err);
            return *finish = NULL, true;
        }
    }
    sl->last = id;
    return false;
}

/* The one forward step over every active sequence. */
static int forward_step(srv *s, int32_t n, char *err) {
    return gemma4_decode(s->sess, n, s->tok, s->seq, s->want, s->logits, err);
}

/* Whether token id keeps the job's forced call well formed; accepted, it
 * joins the call. */
static bool call_takes(srv *s, srv_job *j, int32_t id) {
    size_t n = g4_token_to_piece(s->v, id, true, s->piece, s->piece_cap);
    int st = n <= s->piece_cap ? oai_call_guard_check(&j->guard, s->piece, n) : OAI_CALL_BAD;
    if (st == OAI_CALL_BAD) return false;
    oai_call_guard_push(&j->guard, s->piece, n);
    j->call_done = st == OAI_CALL_DONE;
    return true;
}

/* A NaN or infinite logit comes from a broken model (a weight gone wrong):
 * that request fails with a 500 and the server goes on with the others. */
#define NON_FINITE_LOGITS (-2)

static bool logits_finite(const float *lg, int32_t n) {
    for (int32_t id = 0; id < n; id++)
        if (isnan(lg[id]) || lg[id] == INFINITY) return false;
    return true;
}

/* Whether token id can extend the job's forced call. */
static bool call_fits(srv *s, srv_job *j, int32_t id) {
    size_t n = g4_token_to_piece(s->v, id, true, s->piece, s->piece_cap);
    return n <= s->piece_cap && oai_call_guard_check(&j->guard, s->piece, n) != OAI_CALL_BAD;
}

/* The k largest logits' ids (k <= GUARD_TOP) into top[], by a min-heap. */
static int32_t top_ids(const float *lg, int32_t n_vocab, int32_t *top) {
    int32_t k = 0;
    for (int32_t id = 0; id < n_vocab; id++) {
        if (lg[id] == -INFINITY) continue;
        if (k == GUARD_TOP && lg[id] <= lg[top[0]]) continue;
        int32_t i = k < GUARD_TOP ? k++ : 0; /* sift up a new leaf, or down from a replaced root */
        if (i) {
            for (; i && lg[top[(i - 1) / 2]] > lg[id]; i = (i - 1) / 2) top[i] = top[(i - 1) / 2];
        } else {
            for (;;) {
                int32_t c = 2 * i + 1;
                if (c >= k) break;
                if (c + 1 < k && lg[top[c + 1]] < lg[top[c]]) c++;
                if (lg[top[c]] >= lg[id]) break;
                top[i] = top[c], i = c;
            }
        }
        top[i] = id;
    }
    return k;
}

/* The job's next token from logits lg (modified), -1 when a forced call
 * cannot go on. While a call is forced, only tokens that keep it well
 * formed are left to sample from: the GUARD_TOP most likely are checked
 * (the sampler's top-k and top-p keep fewer than these), and only when none
 * of them fits is every token checked. The sampler draws once, so its
 * penalty history holds only tokens the answer keeps. */
static int32_t pick_token(srv *s, srv_job *j, float *lg) {
    if (!j->guard.text.len || j->call_done) return gemma4_sample(j->smp, lg); /* -1 only when every token is ruled out */
    for (int32_t k = 0; k < s->n_eog; k++) lg[s->eog[k]] = -INFINITY;
    int32_t n_top = top_ids(lg, s->n_vocab, s->guard_top), n_fit = 0;
    for (int32_t k = 0; k < n_top; k++)
        if (call_fits(s, j, s->guard_top[k])) s->guard_top[n_fit] = s->guard_top[k], s->guard_fit[n_fit++] = lg[s->guard_top[k]];
    if (n_fit) { /* only those fitting keep their logits */
        for (int32_t id = 0; id < s->n_vocab; id++) lg[id] = -INFINITY;
        for (int32_t k = 0; k < n_fit; k++) lg[s->guard_top[k]] = s->guard_fit[k];
    } else { /* every token; those whose first byte cannot come next are refused without a parse */
        bool byte_fits[256];
        byte_fits[0] = true;
        for (int b = 1; b < 256; b++) {
            const char c = (char)b;
            byte_fits[b] = oai_call_guard_check(&j->guard, &c, 1) != OAI_CALL_BAD;
        }
        for (int32_t id = 0; id < s->n_vocab; id++) {
            if (lg[id] == -INFINITY) continue;
            if (byte_fits[s->first_byte[id]] && call_fits(s, j, id)) n_fit++;
            else lg[id] = -INFINITY;
        }
        if (!n_fit) return -1;
    }
    int32_t id = gemma4_sample(j->smp, lg);
    return id >= 0 && call_takes(s, j, id) ? id : -1;
}

/* The job's next token, with its log-probabilities when asked for (of the
 * model's distribution: taken from the logits as they came, before a
 * forced call's guard masks any). */
static int32_t choose_token(srv *s, srv_job *j, float *lg) {
    if (!logits_finite(lg, s->n_vocab)) return NON_FINITE_LOGITS;
    oai_token_logprob t = {.n_top = j->top_lp};
    const bool masks = j->guard.text.len && !j->call_done;
    float lse = 0;
    if (j->top_lp >= 0 && masks) { /* the most likely token gives the normaliser: its logit minus its logprob */
        gemma4_logprobs(lg, s->n_vocab, -1, t.n_top ? t.n_top : 1, t.top);
        lse = lg[t.top[0].token] - t.top[0].logprob;
    }
    const int32_t id = pick_token(s, j, lg);
    if (id >= 0 && j->top_lp >= 0) {
        t.tok.token = id;
        t.tok.logprob = masks ? lg[id] - lse : gemma4_logprobs(lg, s->n_vocab, id, t.n_top, t.top);
        oai_logprobs_push(&j->lp, &t, 1); /* the caller holds s->mu */
    }
    return id;
}

int32_t srv_share_batch(const int32_t *need, const bool *generating, int32_t n_slot, int32_t n_batch, int32_t first,
                        int32_t *take) {
    int32_t n = 0, n_prompts = 0;
    for (int32_t i = 0; i < n_slot; i++) {
        take[i] = generating[i] ? 1 : 0;
        n += take[i];
        n_prompts += !generating[i] && need[i] > 0;
    }
    for (int32_t k = 0; k < n_slot && n_prompts; k++) {
        const int32_t i = (first + k) % n_slot;
        if (generating[i] || need[i] <= 0) continue;
        int32_t room = n_batch - n, share = (room + n_prompts - 1) / n_prompts;
        take[i] = need[i] < share ? need[i] : share;
        n += take[i];
        n_prompts--;
    }
    for (int32_t k = 0; k < n_slot && n < n_batch; k++) { /* what prompts shorter than their share left */
        const int32_t i = (first + k) % n_slot;
        if (generating[i] || need[i] <= take[i]) continue;
        int32_t more = need[i] - take[i] < n_batch - n ? need[i] - take[i] : n_batch - n;
        take[i] += more;
        n += more;
    }
    return n;
}

static void run_batch(srv *s, int32_t n, int32_t n_rows, int32_t n_gen);

/* Whether slot i's next step can be speculative: a generating job whose
 * picks need nothing but its sampler (no logprobs, no forced call), with
 * room for a whole step and the pending token after it, so that the end of
 * the context is met by plain steps, token by token, as without -md. */
static bool speculates(const srv *s, int32_t i) {
    const slot *sl = &s->slots[i];
    return s->spec && sl->job && sl->generating && sl->job->top_lp < 0 && !sl->job->guard.text.len &&
           gemma4_seq_pos(s->sess, i) + s->draft_max + 2 < s->p.n_ctx;
}

/* One speculative step of the slots marked in spec_now that are still
 * running. Each emits its kept guesses, then the sampler's pick, up to
 * where its job ends (max_tokens, a stop string, end of generation): what
 * the step produced beyond is dropped with the job. */
static void run_spec(srv *s) {
    int32_t n = 0;
    for (int32_t i = 0; i < s->p.n_parallel; i++) {
        const slot *sl = &s->slots[i];
        if (!s->spec_now[i] || !sl->job) continue; /* failed by the batch before */
        s->spec_seq[n] = i, s->spec_tok[n] = sl->last, s->spec_smp[n] = sl->job->smp, n++;
    }
    if (!n) return;
    char err[G4_ERR_LEN];
    double t0 = now_s();
    int rc = gemma4_spec_step(s->spec, n, s->spec_seq, s->spec_tok, s->spec_smp, s->spec_out, s->spec_n_out, err);
    double t1 = now_s();

    pthread_mutex_lock(&s->mu);
    s->t_gen_total += t1 - t0;
    for (int32_t r = 0; r < n; r++) {
        const int32_t i = s->spec_seq[r];
        if (rc) {
            oai_error_set(&s->slots[i].job->error, 500, "%s", err);
            finish_slot(s, i, NULL);
            continue;
        }
        const int32_t *out = s->spec_out + (size_t)r * (GEMMA4_DRAFT_CAP + 1);
        for (int32_t k = 0; k < s->spec_n_out[r]; k++) {
            const char *finish = NULL;
            s->n_gen_total++;
            if (take_token(s, i, out[k], k == s->spec_n_out[r] - 1, &finish)) {
                finish_slot(s, i, finish);
                break;
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
}

/* Builds and runs one step; false when there was nothing to do. With -md
 * the slots that speculate take no room in the batch and advance after it
 * by their own pass. */
static bool step(srv *s) {
    const int32_t n_slot = s->p.n_parallel;
    int32_t n_spec = 0;
    for (int32_t i = 0; i < n_slot; i++) {
        const slot *sl = &s->slots[i];
        n_spec += s->spec_now[i] = speculates(s, i);
        s->gen[i] = sl->job && sl->generating && !s->spec_now[i];
        s->need[i] = sl->job && !sl->generating ? sl->job->n_ids - sl->n_fed : 0;
    }
    srv_share_batch(s->need, s->gen, n_slot, s->p.n_batch, s->first, s->take);
    s->first = (s->first + 1) % n_slot;
    int32_t n = 0, n_rows = 0, n_gen = 0;
    for (int32_t i = 0; i < n_slot; i++) {
        slot *sl = &s->slots[i];
        if (!s->gen[i]) continue;
        s->tok[n] = sl->last, s->seq[n] = i, s->want[n] = true, n++;
        s->row_slot[n_rows++] = i;
        n_gen++;
    }
    for (int32_t i = 0; i < n_slot; i++) {
        slot *sl = &s->slots[i];
        if (s->gen[i] || !s->take[i]) continue;
        for (int32_t k = 0; k < s->take[i]; k++)
            s->tok[n] = sl->job->ids[sl->n_fed + k], s->seq[n] = i, s->want[n] = false, n++;
        sl->n_fed += s->take[i];
        if (sl->n_fed == sl->job->n_ids) s->want[n - 1] = true, s->row_slot[n_rows++] = i;
    }
    if (!n && !n_spec) return false;
    if (n) run_batch(s, n, n_rows, n_gen);
    if (n_spec) run_spec(s);
    return true;
}

/* The batch of n tokens built by step(): n_rows rows of logits, n_gen of
 * them generating slots' tokens. */
static void run_batch(srv *s, int32_t n, int32_t n_rows, int32_t n_gen) {
    const int32_t n_slot = s->p.n_parallel;
    char err[G4_ERR_LEN];
    double t0 = now_s();
    int rc = forward_step(s, n, err);
    double t1 = now_s();

    pthread_mutex_lock(&s->mu);
    if (rc) { /* e.g. the KV memory cap: the requests of this step fail */
        for (int32_t i = 0; i < n_slot; i++)
            if (s->slots[i].job) oai_error_set(&s->slots[i].job->error, 500, "%s", err), finish_slot(s, i, NULL);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    s->n_prompt_total += (uint64_t)(n - n_gen);
    s->n_gen_total += (uint64_t)n_gen;
    if (n_gen) s->t_gen_total += t1 - t0;
    else s->t_prompt_total += t1 - t0;
    for (int32_t r = 0; r < n_rows; r++) {
        const int32_t i = s->row_slot[r];
        slot *sl = &s->slots[i];
        if (!sl->generating) {
            sl->generating = true;
            sl->job->t_first = t1;
            gemma4_seq_checkpoint(s->sess, i); /* the next turn resumes at the end of this prompt */
        }
        const char *finish = NULL;
        int32_t id = choose_token(s, sl->job, s->logits + (size_t)r * (size_t)s->n_vocab);
        if (id == NON_FINITE_LOGITS) {
            oai_error_set(&sl->job->error, 500, "the model produced non-finite logits (NaN or infinity)");
            finish_slot(s, i, NULL);
        } else if (id < 0 || take_token(s, i, id, true, &finish)) {
            finish_slot(s, i, id < 0 ? "stop" : finish);
        }
    }
    pthread_mutex_unlock(&s->mu);
}

static void update_usage(srv *s) {
    gemma4_kv_usage u;
    gemma4_kv_usage_get(s->sess, &u);
    int64_t pos = 0;
    for (int32_t i = 0; i < s->p.n_parallel; i++) pos += gemma4_seq_pos(s->sess, i);
    gemma4_spec_stats st = {0};
    if (s->spec) gemma4_spec_stats_get(s->spec, -1, &st);
    pthread_mutex_lock(&s->mu);
    s->drafts = st;
    s->kv = u;
    s->kv_positions = pos;
    pthread_mutex_unlock(&s->mu);
}

/* Whether job j can take a slot now. A later choice of a request waits
 * until the first has its prompt in the cache, to fork it instead of
 * computing it again. */
static bool fits(const srv *s, const srv_job *j) {
    if (j->leader && !(j->leader->t_first || j->leader->done || j->leader->cancelled)) return false;
    return s->n_active < s->p.n_parallel && (!s->p.kv_max_bytes || s->kv_charged + j->kv_charge <= s->p.kv_max_bytes);
}

static void *scheduler(void *arg) {
    srv *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        for (int32_t i = 0; i < s->p.n_parallel; i++)
            if (s->slots[i].job && (s->slots[i].job->cancelled || s->stopping)) {
                if (s->stopping && !s->slots[i].job->cancelled)
                    oai_error_set(&s->slots[i].job->error, 503, "the server is shutting down");
                finish_slot(s, i, s->slots[i].job->error.status ? NULL : "stop");
            }
        while (s->queue_head && (s->queue_head->cancelled || s->stopping || fits(s, s->queue_head))) {
            srv_job *j = s->queue_head;
            s->queue_head = j->next;
            if (!s->queue_head) s->queue_tail = NULL;
            s->n_queued--;
            if (j->cancelled || s->stopping) {
                if (s->stopping) oai_error_set(&j->error, 503, "the server is shutting down");
                j->done = true;
                pthread_cond_broadcast(&j->cond);
                job_unref(j);
                continue;
            }
            s->n_requests++;
            admit(s, j);
            if (j->leader) job_unref(j->leader), j->leader = NULL; /* its prompt is forked or computed again */
        }
        if (s->stopping) {
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        bool idle = s->n_active == 0;
        pthread_mutex_unlock(&s->mu);
        if (!idle) step(s);
        update_usage(s);
        if (!idle) continue;
        pthread_mutex_lock(&s->mu);
        if (!s->queue_head && !s->stopping) pthread_cond_wait(&s->wake, &s->mu);
        pthread_mutex_unlock(&s->mu);
    }
}

/* ---------------------------------------------------------------- lifetime */

srv *srv_new(const gemma4_model *m, const srv_params *p, char *err) {
    srv *s = calloc(1, sizeof *s);
    if (!s) return snprintf(err, G4_ERR_LEN, "server: out of memory"), NULL;
    s->m = m;
    s->v = g4_model_vocab(m);
    s->p = *p;
    s->n_vocab = gemma4_n_vocab(m);
    if (!(s->eog = malloc((size_t)s->n_vocab * sizeof *s->eog))) return snprintf(err, G4_ERR_LEN, "server: out of memory"), free(s), NULL;
    for (int32_t id = 0; id < s->n_vocab; id++)
        if (g4_vocab_is_eog(s->v, id)) s->eog[s->n_eog++] = id;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->wake, NULL);
    if (s->p.n_batch < s->p.n_parallel) s->p.n_batch = s->p.n_parallel;
    s->sp = (gemma4_session_params){.n_ctx = p->n_ctx, .n_threads = p->n_threads, .n_seq = p->n_parallel,
                                    .n_ubatch = s->p.n_batch, .type_k = GEMMA4_KV_F16, .type_v = GEMMA4_KV_F16,
                                    .kv_max_bytes = p->kv_max_bytes};
    cli_session_env(&s->sp);
    if (!(s->sess = gemma4_session_new(m, &s->sp, err))) return srv_free(s), NULL;
    s->p.n_ctx = s->sp.n_ctx = gemma4_session_n_ctx(s->sess);
    if (p->draft_model) { /* the drafter continues the target's hidden state */
        const gemma4_spec_params spp = {.draft_max = p->draft_max, .draft_min = p->draft_min, .hidden = true};
        s->draft_max = p->draft_max ? p->draft_max : 8;
        if (!(s->drafter = gemma4_drafter_load(p->draft_model, m, err)) ||
            !(s->spec = gemma4_spec_new(s->sess, gemma4_draft_mtp, s->drafter, &spp, err)))
            return srv_free(s), NULL;
    }
    const size_t nb = (size_t)s->p.n_batch, np = (size_t)p->n_parallel;
    s->piece_cap = g4_vocab_max_piece(s->v) + G4_DETOK_HELD;
    s->slots = calloc(np, sizeof *s->slots);
    s->piece = malloc(s->piece_cap);
    s->tok = malloc(nb * sizeof *s->tok);
    s->seq = malloc(nb * sizeof *s->seq);
    s->want = malloc(nb * sizeof *s->want);
    s->row_slot = malloc(np * sizeof *s->row_slot);
    s->logits = malloc(np * (size_t)s->n_vocab * sizeof *s->logits);
    s->need = malloc(np * sizeof *s->need);
    s->take = malloc(np * sizeof *s->take);
    s->gen = malloc(np * sizeof *s->gen);
    s->spec_now = calloc(np, sizeof *s->spec_now);
    s->spec_seq = malloc(np * sizeof *s->spec_seq);
    s->spec_tok = malloc(np * sizeof *s->spec_tok);
    s->spec_n_out = malloc(np * sizeof *s->spec_n_out);
    s->spec_smp = malloc(np * sizeof *s->spec_smp);
    s->spec_out = malloc(np * (GEMMA4_DRAFT_CAP + 1) * sizeof *s->spec_out);
    if ((s->first_byte = malloc((size_t)s->n_vocab)) && s->piece)
        for (int32_t id = 0; id < s->n_vocab; id++) {
            size_t n = g4_token_to_piece(s->v, id, true, s->piece, s->piece_cap);
            /* a prefix of a text the guard takes is one it takes, but a
             * control token is judged whole (its first byte alone may be
             * refused where the marker is right) */
            s->first_byte[id] = n && n <= s->piece_cap && !g4_vocab_is_control(s->v, id) ? (unsigned char)s->piece[0] : 0;
        }
    if (!s->slots || !s->piece || !s->first_byte || !s->tok || !s->seq || !s->want || !s->row_slot || !s->logits || !s->need || !s->take ||
        !s->gen || !s->spec_now || !s->spec_seq || !s->spec_tok || !s->spec_n_out || !s->spec_smp || !s->spec_out)
        return snprintf(err, G4_ERR_LEN, "server: out of memory"), srv_free(s), NULL;
    if (pthread_create(&s->thread, NULL, scheduler, s))
        return snprintf(err, G4_ERR_LEN, "server: cannot start the scheduler thread"), srv_free(s), NULL;
    s->started = true;
    return s;
}

int32_t srv_n_ctx(const srv *s) { return s->p.n_ctx; }

void srv_stop(srv *s) {
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    if (s->started) pthread_join(s->thread, NULL);
    s->started = false;
}

void srv_free(srv *s) {
    if (!s) return;
    srv_stop(s);
    gemma4_spec_free(s->spec);
    gemma4_session_free(s->sess);
    gemma4_drafter_free(s->drafter);
    free(s->slots), free(s->piece), free(s->tok), free(s->seq), free(s->want), free(s->row_slot), free(s->logits);
    free(s->need), free(s->take), free(s->gen), free(s->eog), free(s->first_byte);
    free(s->spec_now), free(s->spec_seq), free(s->spec_tok), free(s->spec_n_out), free(s->spec_smp), free(s->spec_out);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->wake);
    free(s);
}

void srv_metrics(srv *s, jw *w) {
    pthread_mutex_lock(&s->mu);
    const double cap = (double)s->p.n_parallel * s->p.n_ctx;
    static const char *const help[][3] = {
        {"prompt_tokens_total", "counter", "Prompt tokens processed."},
        {"prompt_seconds_total", "counter", "Time spent on steps that only processed prompts."},
        {"tokens_predicted_total", "counter", "Tokens generated."},
        {"tokens_predicted_seconds_total", "counter", "Time spent on steps that generated tokens."},
        {"n_decode_total", "counter", "Requests admitted to a slot."},
        {"prompt_tokens_seconds", "gauge", "Average prompt throughput in tokens/s."},
        {"predicted_tokens_seconds", "gauge", "Average generation throughput in tokens/s (all sequences)."},
        {"kv_cache_usage_ratio", "gauge", "KV positions held / (slots * context)."},
        {"kv_cache_tokens", "gauge", "KV positions held by all sequences."},
        {"kv_cache_bytes", "gauge", "KV page memory in use."},
        {"requests_processing", "gauge", "Requests in a slot."},
        {"requests_deferred", "gauge", "Requests waiting for a slot."},
        {"n_drafted_total", "counter", "Tokens drafted by the -md drafter and checked."},
        {"n_drafted_accepted_total", "counter", "Drafted tokens kept."},
    };
    const double values[] = {
        (double)s->n_prompt_total, s->t_prompt_total, (double)s->n_gen_total, s->t_gen_total, (double)s->n_requests,
        s->t_prompt_total > 0 ? s->n_prompt_total / s->t_prompt_total : 0,
        s->t_gen_total > 0 ? s->n_gen_total / s->t_gen_total : 0, cap > 0 ? s->kv_positions / cap : 0,
        (double)s->kv_positions, (double)s->kv.bytes_used, s->n_active, s->n_queued, (double)s->drafts.drafted,
        (double)s->drafts.accepted,
    };
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        jw_printf(w, "# HELP llamacpp:%s %s\n# TYPE llamacpp:%s %s\nllamacpp:%s ", help[i][0], help[i][2], help[i][0],
                  help[i][1], help[i][0]);
        jw_num(w, values[i]);
        jw_cstr(w, "\n");
    }
}
