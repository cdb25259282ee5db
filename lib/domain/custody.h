/* The custody rules (DESIGN §3, §4): pure functions of (facts, event) → new facts or a
 * refusal. No I/O, no JSON, no database: the API layer loads the facts of the objects a batch
 * touches into a tl_world_t, applies the events one by one with tl_custody_apply(), and writes
 * the touched objects back.
 *
 * Sampling-point events are strict and look only at sampling-point facts (site, opened_at,
 * sealed_at, box, ...); hand-over and lab events are tolerant: they create a placeholder
 * object when the earlier events are missing and are refused only for malformed input, scope
 * or a contradiction (result_conflict). Derived state (anomalies, follow-ups) is not decided
 * here: the database re-derives it from facts, so arrival order never matters.
 *
 * Times are Unix milliseconds; 0 means "not yet". Codes are NUL-terminated strings. */
#ifndef TL_DOMAIN_CUSTODY_H
#define TL_DOMAIN_CUSTODY_H

#include "base/err.h"
#include "base/strmap.h"

#include <stddef.h>
#include <stdint.h>

#define TL_CODE_MAX 32
#define TL_HMAC_HEX 64

typedef char tl_code_t[TL_CODE_MAX + 1];
typedef char tl_region_t[10];
typedef char tl_hmac_t[TL_HMAC_HEX + 1];

typedef enum {
  TL_EV_TUBE_OPEN = 0, /* collector: tube, round, capacity */
  TL_EV_SAMPLE_ADD,    /* collector: tube, person */
  TL_EV_TUBE_SEAL,     /* collector: tube, count */
  TL_EV_BOX_PACK,      /* collector: box, tubes */
  TL_EV_BOX_SEAL,      /* collector: box, lab, count */
  TL_EV_BOX_PICKUP,    /* courier: box */
  TL_EV_BOX_DELIVER,   /* courier or lab: box, lab */
  TL_EV_BOX_RECEIVE,   /* lab: box, tubes */
  TL_EV_TUBE_REJECT,   /* lab: tube, reason */
  TL_EV_TUBE_RESULT,   /* lab: tube, result, ct, amend */
  TL_EV_COUNT
} tl_event_type_t;

typedef enum {
  TL_ROLE_COLLECTOR = 0, /* one site */
  TL_ROLE_COURIER,       /* one courier */
  TL_ROLE_LAB,           /* one lab */
  TL_ROLE_VIEWER,        /* a region, read only */
  TL_ROLE_SUPERVISOR,    /* a region, plus anomalies and rounds */
  TL_ROLE_ADMIN,         /* everything */
  TL_ROLE_COUNT
} tl_role_t;

typedef enum {
  TL_RESULT_NONE = 0,
  TL_RESULT_NEGATIVE,
  TL_RESULT_POSITIVE,
  TL_RESULT_INVALID
} tl_result_t;

typedef enum {
  TL_REASON_NONE = 0,
  TL_REASON_LEAK,
  TL_REASON_UNLABELED,
  TL_REASON_INSUFFICIENT,
  TL_REASON_OTHER
} tl_reason_t;

const char *tl_event_type_name(tl_event_type_t t);
/* Returns the type or -1. */
int tl_event_type_parse(const char *s);
const char *tl_role_name(tl_role_t r);
int tl_role_parse(const char *s);
const char *tl_result_name(tl_result_t r);
int tl_result_parse(const char *s);     /* TL_RESULT_* or -1 (NONE is not a word) */
const char *tl_reason_name(tl_reason_t r);
int tl_reason_parse(const char *s);     /* TL_REASON_* or -1 */
/* Which role may send an event type. */
int tl_event_allowed(tl_role_t role, tl_event_type_t t);

typedef struct {
  tl_event_type_t type;
  char id[37];           /* lower-case UUID */
  int64_t at;            /* event time, Unix ms */
  tl_code_t tube, box, round, lab;
  int capacity;          /* tube.open: 0 = the round's ratio */
  int count;             /* tube.seal/box.seal: -1 = not given */
  const tl_code_t *tubes; /* box.pack/box.receive, borrowed */
  int ntubes;
  tl_hmac_t person;      /* sample.add: the person's lookup HMAC */
  tl_reason_t reason;
  tl_result_t result;
  int amend;
  const char *ct;        /* tube.result: the ct object as JSON text, or NULL; borrowed */
} tl_event_t;

typedef struct {
  tl_role_t role;
  tl_code_t code;        /* site, courier or lab code */
  tl_region_t region;    /* site's township, courier's or lab's county */
} tl_sender_t;

typedef struct {
  tl_code_t code;
  int touched;           /* changed in this batch: to be written */
  tl_region_t region;
  /* sampling-point facts */
  tl_code_t round, site;
  int capacity;          /* 0 until opened */
  int64_t opened_at, first_sample_at, sealed_at, packed_at;
  int sampled;
  int seal_count;        /* -1: not counted */
  tl_code_t box;
  /* lab facts */
  int64_t received_at, rejected_at, result_at;
  tl_code_t received_lab, received_box, rejected_lab, result_lab;
  tl_reason_t reject_reason;
  tl_result_t result;
  char *ct;              /* owned JSON text or NULL */
  /* persons bound, for already_in_tube */
  tl_hmac_t *persons;    /* owned */
  int npersons, cappersons;
} tl_tube_t;

typedef struct {
  tl_code_t code;
  int touched;
  tl_region_t region;
  tl_code_t site, dest_lab, courier, delivered_lab, received_lab;
  int64_t packed_at, sealed_at, picked_up_at, delivered_at, received_at;
  int seal_count;        /* -1: not counted */
  int packed;            /* tubes packed into it */
} tl_box_t;

typedef struct {
  tl_code_t code;
  int pool_size;
  int closed;
  char region[10];
} tl_round_t;

typedef struct {
  tl_code_t tube;
  tl_hmac_t person;
  tl_code_t round, site;
  int64_t at;
  char event[37];
} tl_sample_t;

typedef struct {
  tl_code_t box, tube, lab;
  int64_t at;
  char event[37];
} tl_receipt_t;

/* The facts a batch sees. Arrays are owned and grow; lookups are by code. */
typedef struct {
  tl_tube_t *tubes;
  int ntubes, captubes;
  tl_box_t *boxes;
  int nboxes, capboxes;
  tl_round_t *rounds;
  int nrounds, caprounds;
  tl_code_t *labs;       /* labs known to exist */
  int nlabs, caplabs;
  tl_sample_t *samples;  /* new in this batch */
  int nsamples, capsamples;
  tl_receipt_t *receipts; /* new in this batch */
  int nreceipts, capreceipts;
  /* code -> position in tubes / boxes, for the first *_indexed of them (lookups scan the
   * rest, which is none unless memory ran out) */
  tl_strmap_t tube_index, box_index;
  int tubes_indexed, boxes_indexed;
} tl_world_t;

void tl_world_init(tl_world_t *w);
void tl_world_dispose(tl_world_t *w);
/* Find or add (zeroed, seal_count -1) by code. NULL on allocation failure. */
tl_tube_t *tl_world_tube(tl_world_t *w, const char *code, int create);
tl_box_t *tl_world_box(tl_world_t *w, const char *code, int create);
TL_WUR int tl_world_add_round(tl_world_t *w, const tl_round_t *r);
TL_WUR int tl_world_add_lab(tl_world_t *w, const char *code);
TL_WUR int tl_tube_add_person(tl_tube_t *t, const char *hmac);

/* A refusal: code NULL means accepted. The message is a constant sentence. */
typedef struct {
  const char *code;
  const char *message;
} tl_refusal_t;

/* Applies one event from sender to the world. On refusal nothing in the world changed. */
tl_refusal_t tl_custody_apply(tl_world_t *w, const tl_sender_t *sender, const tl_event_t *e);

/* True when code lies in the region subtree (prefix test on GB/T 2260 codes). */
int tl_region_contains(const char *region, const char *code);

#endif
