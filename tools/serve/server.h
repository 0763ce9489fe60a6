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
} srv_params;

typedef struct srv srv;
typedef struct srv_job srv_job;

/* Starts the scheduler thread over model m (which must outlive it). */
srv *srv_new(const gemma4_model *m, const srv_params *p, char *err);
/* Cancels every request and stops the thread (idempotent); srv_free also. */
void srv_stop(srv *s);
void srv_free(srv *s);
int32_t srv_n_ctx(const srv *s);

/* Queues a generation of prompt ids[0..n) (copied). r gives the limits,
 * sampling, stop strings, whether control tokens are rendered (chat) and
 * the forced tool call, which the job keeps well formed and ends with.
 * NULL with e set: prompt plus max_tokens beyond the context or the KV cap
 * (400), bad sampling (400), queue full or shutting down (503). */
srv_job *srv_submit(srv *s, const oai_request *r, const int32_t *ids, int32_t n, oai_error *e);
/* Waits up to timeout_ms for news. Appends the text that became final since
 * the last call to out. Returns 1 when the job is over (then *finish is
 * "stop" or "length", or NULL with e set when it failed, and *u holds its
 * figures), else 0. */
int srv_job_wait(srv_job *j, jw *out, int timeout_ms, const char **finish, oai_usage *u, oai_error *e);
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
