/* The city model of the benchmark: a deterministic (seeded) screening day as the devices would
 * send it, for the load generator (loadgen.c) and for the storage ceiling (pgload.c), which must
 * see exactly the same event JSON.
 *
 * Per sampling point: pooled tubes of 10 (1 tube.open + 10 sample.add + 1 tube.seal), packed ten
 * at a time into boxes of 50 (box.pack), each box sealed to a lab (box.seal); a courier picks the
 * box up and delivers it (box.pickup, box.deliver); the lab receives it (box.receive, all 50
 * tubes) and returns one result per tube. A pooled positive calls its ten persons back: the site
 * opens a single tube per person, these go into follow-up boxes that travel the same way, and
 * the lab returns their results (one positive per pool, the others negative).
 *
 * The events of one sender form chains (runs of events that must be sent in this order by that
 * sender). A chain may wait for other events to be acknowledged first: a courier's chain for a
 * box waits for the box.seal, the lab's for the box.deliver, a site's follow-up tubes for the
 * positive result, a follow-up box for the seals of its tubes. So every hand-over arrives after
 * the facts it hands over, as it would in the field, and no custody anomaly is made up by the
 * load generator itself. Content does not depend on the order chains are released in.
 *
 * Event times lie in [base, base + ~125 min]; callers pass a base about 150 minutes in the past,
 * so every event is in the recent past (the daemon refuses times more than 10 minutes ahead). */
#ifndef TL_BENCH_MODEL_H
#define TL_BENCH_MODEL_H

#include <stddef.h>
#include <stdint.h>

typedef enum { BM_COLLECTOR = 0, BM_COURIER, BM_LAB } bm_role_t;

typedef struct {
  bm_role_t role;
  char code[33];
  char region[10];   /* township of a site, county of a courier or lab */
  char token[80];    /* bearer token (filled from the registry file) */
} bm_sender_t;

/* The registry the bench creates through the admin API (loadgen setup) and every later
 * command reads back from the registry file. */
typedef struct {
  char county[7];
  char round[33];
  int ntownships;
  bm_sender_t *senders;  /* sites, then couriers, then labs; owned */
  int nsites, ncouriers, nlabs;
  char viewer_token[80];
  char admin_token[80];
} bm_registry_t;

/* Builds the registry's shape (codes, regions; no tokens) for the given sizes. */
int bm_registry_shape(bm_registry_t *r, int townships, int sites, int couriers, int labs);
/* Writes / reads the registry file (codes and tokens, one sender a line). */
int bm_registry_save(const bm_registry_t *r, const char *path);
int bm_registry_load(bm_registry_t *r, const char *path);
void bm_registry_dispose(bm_registry_t *r);
/* Township code k (0-based) of the county: county + 3 digits. */
void bm_township_code(const bm_registry_t *r, int k, char out[10]);
/* A township's name (巴彦县's real towns, numbered when there are more). */
const char *bm_township_name(int k, char *buf, size_t cap);

typedef struct {
  uint64_t seed;
  const char *tag;       /* prefix of every tube and box code of this workload (1-6 of A-Za-z0-9) */
  int person_block;      /* which block of synthetic persons (0-125, 4 M each), so workloads never share one */
  long person_offset;    /* the first person of the block (hand runs that each need fresh persons) */
  int64_t base_ms;       /* time of the first event, Unix ms */
  int boxes_per_site;    /* pooled boxes of 50 tubes per site */
  int sites;             /* this many sites of the registry take part (0 = all from site_offset on) */
  int site_offset;       /* the first of them (0-based) */
  double positive_rate;  /* share of pooled tubes that test positive */
  int site_only;         /* only the sampling points' own events (single-scan workloads) */
} bm_params_t;

typedef enum {
  BM_TUBE_OPEN = 0, BM_SAMPLE_ADD, BM_TUBE_SEAL, BM_BOX_PACK, BM_BOX_SEAL, BM_BOX_PICKUP,
  BM_BOX_DELIVER, BM_BOX_RECEIVE, BM_TUBE_RESULT, BM_NTYPES
} bm_type_t;

extern const char *const bm_type_names[BM_NTYPES];

typedef struct {
  char *json;            /* the event object as sent, owned */
  uint32_t len;
  int32_t sender;        /* index into the registry's senders */
  int32_t then;          /* chain that waits for this event's acknowledgement, or -1 */
  uint8_t type;          /* bm_type_t */
  char id[37];
  int64_t at;            /* Unix ms */
} bm_event_t;

typedef struct {
  int32_t first, n;      /* events [first, first + n) of the workload, in sending order */
  int32_t sender;
  int32_t waits;         /* events to be acknowledged before the chain may be sent */
} bm_chain_t;

typedef struct {
  bm_event_t *events;
  int nevents, capevents;
  bm_chain_t *chains;
  int nchains, capchains;
  long persons;          /* distinct persons sampled */
  long samples;          /* sample.add events */
  long tubes, boxes, positives;
  int64_t max_at;
  size_t bytes;          /* sum of the JSON lengths */
} bm_workload_t;

/* Generates the workload. 0 or -1 (out of memory, bad parameters: message on stderr). */
int bm_workload_build(bm_workload_t *w, const bm_registry_t *r, const bm_params_t *p);
void bm_workload_dispose(bm_workload_t *w);

/* Synthetic GB 11643 resident ID number of person i of a block (18 characters + NUL). */
void bm_resident_id(int block, long i, char out[19]);

/* Monotonic and wall clocks. */
double bm_now_s(void);
int64_t bm_wall_ms(void);

#endif
