/* Event ingest, shared by events.c (decoding a request into a batch) and ingest.c (group
 * commit). Internal to the api layer.
 *
 * A batch is one POST /v1/events: its events as slots, its sender (from the token) and its
 * arrival time. Batches queue in the daemon; a writer takes as many as fit into one group
 * (up to TL__GROUP_EVENTS events) and applies the group in ONE transaction: advisory locks and
 * facts loaded for the union of their keys, the custody rules batch by batch in arrival order,
 * one set-based write, one COMMIT — then every request of the group is answered. Under load
 * many requests share each commit (group commit); alone, a request is its own group. */
#ifndef TL_API_INGEST_H
#define TL_API_INGEST_H

#include "api/api.h"
#include "base/buf.h"
#include "domain/custody.h"

#include <cjson/cJSON.h>
#include <stdint.h>

/* Events in one transaction at most. Bigger groups do not commit faster per event (groups of
 * ~430 events already share the fixed cost), but a batch behind a group of 5,000 waited for
 * seconds, out of sight of the queue's wait bound (--ingest-max-wait): with 1,000, a burst of
 * 256 uploads of 100 events got 503s for its excess and an accepted p99 of 2.7 s instead of
 * none and 6.7 s (docs/PERFORMANCE.md). */
#define TL__GROUP_EVENTS 1000
#define TL__QUEUE_EVENTS 10000 /* events waiting in a daemon before 503, without --ingest-queue */

typedef enum {
  TL__SLOT_REJECTED = 0, /* refused: code and message say why; nothing stored */
  TL__SLOT_PENDING,      /* valid, waiting for the rules */
  TL__SLOT_ACCEPTED,     /* applied and to be written */
  TL__SLOT_DUPLICATE     /* seen before with the same content */
} tl__slot_state_t;

typedef struct {
  tl__slot_state_t state;
  int valid;             /* passed decoding: the rules decide (again, after a failed group) */
  tl_event_t ev;
  char id_text[40];      /* the id as sent (for the answer), even when invalid */
  int has_id;
  char digest[65];
  const char *code;
  char message[200];
  tl_code_t *tubes;      /* owned list for box.pack/box.receive */
  char *ct;              /* owned JSON text of ct */
  cJSON *body;           /* owned: the event as it enters the log (no personal data) */
  cJSON *person_row;     /* owned: the persons row for sample.add */
  char anomalies[8][24]; /* anomaly types opened (or stored, for duplicates) */
  int nanomalies;
} tl__slot_t;

typedef struct tl__batch_s {
  struct tl__batch_s *next; /* in the ingest queue */
  tl_api_t *api;
  tl_http_exchange_t *x;    /* held until the batch is answered */
  tl_sender_t sender;
  tl__slot_t *slots;
  int n;
  int pending;              /* slots still PENDING after decoding */
  int solo;                 /* retry alone: its group failed on a database error */
  int64_t now;              /* arrival, Unix ms */
  uint64_t queued_ns;       /* when it first joined the queue (uv_hrtime) */
} tl__batch_t;

/* Decodes and validates a request body from a sender into a new batch (x not set yet), or
 * returns NULL with err set for a body refused as a whole. Pure apart from the clock and the
 * keys: the fuzz target drives it directly. */
#include "api/json.h"
tl__batch_t *tl__batch_decode(tl_api_t *api, tl_role_t role, const char *scope, const char *region,
                              const char *body, size_t len, tl_api_err_t *err);
void tl__slot_refuse(tl__slot_t *s, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void tl__batch_free(tl__batch_t *b);
/* Answers the batch (results, or the error for status != 0), releases its exchange, frees it. */
void tl__batch_finish(tl__batch_t *b, int status);
/* The argument of tl_write for a group (write_arg.c): the accepted slots among slots[0..n)
 * (slot i of batch owner[i]) and the touched facts of world, as JSON text the caller frees;
 * NULL when out of memory. The slots are only read. *naccepted: the events written. */
char *tl__write_arg(tl__slot_t *const *slots, tl__batch_t *const *owner, int n, tl_world_t *world,
                    int *naccepted);
/* Queues the batch for the next group; it is answered later. Refused (503 overloaded) when the
 * queue is full in events or in time. */
void tl__ingest_submit(tl_api_t *api, tl__batch_t *b);
/* 1 when a batch of this many events would be refused now: the queue is full in time
 * (--ingest-max-wait) or in events. A request can then be refused before its body is
 * decoded, which under overload is most of the daemon's work for it (events: an estimate
 * from the body's text, 0 when unknown). */
int tl__ingest_busy(const tl_api_t *api, long events);
/* Events waiting in this daemon's queue, and how long the oldest waiting batch has waited in
 * seconds (0 when none waits), for /metrics. */
long tl__ingest_queued(const tl_api_t *api);
double tl__ingest_oldest_wait(const tl_api_t *api);
/* Groups sent to the database by tl_write (plain 0) or, opening and sampling tubes only, by
 * tl_write_plain (plain 1; it may still hand one to tl_write), for /metrics. */
unsigned long long tl__ingest_written(const tl_api_t *api, int plain);
/* Registers the group's statements (tl_load, tl_write, tl_write_plain) as prepared on every
 * connection of db, so that a group's round trips carry no parse and no plan of their own. */
TL_WUR int tl__ingest_prepare(tl_db_pool_t *db);
/* Appends the step histograms (tubeloop_ingest_step_seconds) for /metrics. */
TL_WUR int tl__ingest_render_metrics(const tl_api_t *api, tl_buf_t *out);

#endif
