/* The generation scheduler behind `gemma4 serve`: one thread owns the
 * session and advances every active request together, one batched forward
 * step (gemma4_decode) at a time. Each of the --parallel slots is one KV
 * sequence. A step carries the next token of every generating slot plus
 * chunks of the prompts being processed, up to n_batch tokens, so a long
 * prompt is fed in pieces between decoding steps instead of stalling them.
 * New requests take a free slot between steps; requests beyond the free
 * slots wait in a bounded queue. A finished request leaves its tokens in
 * its slot: a later prompt starting the same way (the next turn of a chat)
 * goes to the slot sharing the longest prefix and only feeds the rest; when
 * a busy slot shares more, its sequence is forked (pages shared).
 *
 * With a KV memory cap, each request is charged the most KV memory it can
 * come to use (its prompt plus max_tokens, or the whole context) when it
 * takes a slot; a request that would pass the cap waits in the queue until
 * enough others finish, and one that could never fit is refused. Cached
 * sequences of finished requests are dropped when the charged requests
 * need their memory. */
#ifndef G4_SERVER_H
#define G4_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "gemma4_internal.h"
#include "tools/json_write.h"
#include "tools/serve/openai.h"

typedef struct srv_params {
    int32_t n_parallel; /* slots = sequences generating at once */
    int32_t n_ctx;      /* positions per sequence */
    int32_t n_threads;
    int32_t n_batch;    /* tokens per step at most */
    int32_t queue_max;  /* requests waiting for a slot at most; more get 503 */
    uint64_t kv_max_bytes; /* cap on KV memory of all slots; 0 = none */
    /* A sequence that fills its n_ctx keeps its first n_keep + 1 positions
     * (BOS and n_keep tokens; n_keep -1: the whole prompt), drops half of
     * the rest and goes on (gemma4_seq_shift), as llama-server's
     * --context-shift; false: the request ends with "length". */
    bool context_shift;
    int32_t n_keep;
    /* Speculative decoding with this MTP drafter (NULL: none): the
     * generating requests advance together by gemma4_spec_step, up to
     * draft_max (0 = 8) guesses each per step, the length adapting down to
     * draft_min (0 = 1). Requests asking for logprobs or forcing a tool call
     * (their picks need the logits) and those near the end of their context
     * are decoded plainly. */
    const char *draft_model;
    int32_t draft_max, draft_min;
} srv_params;

typedef struct srv srv;
typedef struct srv_job srv_job;

/* Starts the scheduler thread over model m (which must outlive it); with
 * p->draft_model, fails with the loader's line when the drafter does not
 * fit m. */
srv *srv_new(const gemma4_model *m, const srv_params *p, char *err);
/* Cancels every request and stops the thread (idempotent); srv_free also. */
void srv_stop(srv *s);
void srv_free(srv *s);
int32_t srv_n_ctx(const srv *s);

/* Queues a generation of prompt ids[0..n) (copied): one job per choice
 * (r->n_choices, at least 1) into jobs[]. r gives the limits, sampling
 * (choice i is seeded r->sampling.seed + i), stop strings, logprobs,
 * whether control tokens are rendered (chat) and the forced tool call,
 * which the job keeps well formed and ends with. The choices after the
 * first wait for its prompt and fork its cache. 0, or -1 with e set:
 * prompt plus max_tokens beyond the context or the KV cap (400), bad
 * sampling or grammar (400), queue full or shutting down (503). */
int srv_submit(srv *s, const oai_request *r, const int32_t *ids, int32_t n, srv_job **jobs, oai_error *e);
/* Waits up to timeout_ms for news. Appends the text that became final since
 * the last call to out, and the logprobs of the tokens generated since to
 * lp (NULL: not wanted). Returns 1 when the job is over (then *finish is
 * "stop" or "length", or NULL with e set when it failed, and *u holds its
 * figures), else 0. */
int srv_job_wait(srv_job *j, jw *out, oai_logprobs *lp, int timeout_ms, const char **finish, oai_usage *u,
                 oai_error *e);
/* The client is gone: the job ends at the next step and its sequence is freed. */
void srv_job_cancel(srv_job *j);
/* The caller's last use of j (cancels it if still running). */
void srv_job_release(srv_job *j);

/* How one step shares its n_batch tokens: slot i has need[i] prompt tokens
 * left to feed (0: none), or is generating (one token). Generating slots
 * always get their token; the room left is split evenly over the prompts,
 * in slot order from `first` (the scheduler moves it every step, so the
 * rounding favours each in turn), and what shorter prompts leave goes to
 * the longer ones. Writes take[i]; returns their sum. */
int32_t srv_share_batch(const int32_t *need, const bool *generating, int32_t n_slot, int32_t n_batch, int32_t first,
                        int32_t *take);

/* Prometheus text exposition of the counters (llama-server's names). */
void srv_metrics(srv *s, jw *w);

#endif
