/* The screening-round model behind `tubeloop simulate`: a seeded discrete-event simulation of
 * one round in one county that produces every device's events in advance.
 *
 * Pure code: no I/O, no clock, no global state. Given the same parameters (seed included) it
 * produces the same plan byte for byte: the same persons, barcodes, event ids, times (as
 * offsets in milliseconds from the simulation's start, which the driver in simulate.c maps to
 * the present) and the outcome the server must give to each event. The driver only sends the
 * plan and compares; it never decides anything about the round.
 *
 * What is modelled (times are simulated):
 *   - persons arrive county-wide as a Poisson process (`rate` per minute) at sites chosen with
 *     fixed random weights; each site scans them into pooled tubes (tube.open, sample.add),
 *     seals a tube when it holds `pool` persons, packs it into the site's current box and seals
 *     the box at 50 tubes or when its courier comes; after its last arrival a site seals the
 *     partly filled tube;
 *   - couriers tour their sites every 45 minutes (box.pickup) and deliver to the labs
 *     (box.deliver); labs receive boxes (box.receive), reject a few tubes (tube.reject) and
 *     result the rest after a lab-specific delay (tube.result);
 *   - a pooled positive sends each of its persons back to the same site for a single tube
 *     (one of them is the true positive); an invalid or rejected tube sends them back for a
 *     resample (negative);
 *   - mistakes (`mistakes` > 0): ID numbers with a mistyped digit (refused invalid_person,
 *     then typed again), persons who come back and queue twice (person_repeat; refused
 *     already_in_tube if their first tube is still open), operators who forget to seal a full
 *     tube (refused tube_full), a tube left out at receipt (tube_missing), a box delivered to
 *     the wrong lab (wrong_lab), and phones that go offline and upload their events late in a
 *     burst (a site during sampling, the first courier on a tour). Tubes holding a person who
 *     comes twice are always negative and never left out, so the person's status is plain. */
#ifndef TL_SIMULATE_MODEL_H
#define TL_SIMULATE_MODEL_H

#include <stddef.h>
#include <stdint.h>

/* Device roles, in the order the driver sends a tick's events (a site's events before the
 * courier's pickup, the courier's delivery before the lab's receipt). */
enum {
  TL_SIM_COLLECTOR = 0, /* a sampling point's phone */
  TL_SIM_COURIER = 1,   /* a courier's phone */
  TL_SIM_LAB = 2        /* a lab's system */
};

/* Event types; the names are DESIGN §4's. */
enum {
  TL_SIM_TUBE_OPEN,
  TL_SIM_SAMPLE_ADD,
  TL_SIM_TUBE_SEAL,
  TL_SIM_BOX_PACK,
  TL_SIM_BOX_SEAL,
  TL_SIM_BOX_PICKUP,
  TL_SIM_BOX_DELIVER,
  TL_SIM_BOX_RECEIVE,
  TL_SIM_TUBE_REJECT,
  TL_SIM_TUBE_RESULT,
  TL_SIM_NTYPES
};

/* What the server must answer to an event. */
enum {
  TL_SIM_EXPECT_ACCEPTED = 0,   /* accepted (or duplicate on a retry) */
  TL_SIM_EXPECT_INVALID_PERSON, /* rejected: invalid_person (wrong check character) */
  TL_SIM_EXPECT_TUBE_FULL,      /* rejected: tube_full */
  TL_SIM_EXPECT_ALREADY_IN_TUBE, /* rejected: already_in_tube (a repeat while the tube is open) */
  TL_SIM_NEXPECT
};

/* Anomalies the model provokes on purpose, each attributed to one event's answer. */
enum {
  TL_SIM_PROVOKE_NONE = 0,
  TL_SIM_PROVOKE_PERSON_REPEAT, /* the second sample.add of a person in the round */
  TL_SIM_PROVOKE_TUBE_MISSING,  /* the box.receive that leaves a tube out */
  TL_SIM_PROVOKE_WRONG_LAB,     /* the box.deliver to another lab than the box's */
  TL_SIM_NPROVOKE
};

/* Results of a tube. */
enum { TL_SIM_NEGATIVE = 0, TL_SIM_POSITIVE = 1, TL_SIM_INVALID = 2 };

typedef struct {
  uint64_t seed;           /* everything random comes from this */
  const char *county;      /* 6-digit county code (borrowed) */
  const char *round;       /* round code (borrowed): barcodes and event ids derive from it */
  const char *prefix;      /* registry code prefix of sites, labs and couriers (borrowed) */
  const char *county_name; /* for the names of labs (borrowed) */
  int ntownships;          /* townships to spread the sites over (> 0) */
  const char *const *township_names; /* ntownships names (borrowed), for the sites' names */
  int pool;                /* pooling ratio: 1, 5, 8, 10 or 20 */
  int nsites, nlabs, ncouriers;
  int npersons;            /* distinct persons who come to be sampled */
  double rate;             /* arrivals per minute, county-wide */
  double positive_rate;    /* share of (pooled) tubes that test positive */
  double invalid_rate;     /* share of tubes resulted invalid */
  double reject_rate;      /* share of tubes rejected at the lab */
  double mistakes;         /* scale of the provoked mistakes; 0 = none */
} tl_sim_params_t;

typedef struct {
  int role;                /* TL_SIM_* role */
  char code[40];           /* site, courier or lab code */
  char name[160];          /* its registry name (UTF-8) */
  int township;            /* sites: index of the township; else -1 */
  int index;               /* index within its role */
  int64_t offline_from;    /* offline window [from, until) in ms, or -1: events inside are */
  int64_t offline_until;   /* sent at `until`, in one burst */
} tl_sim_device_t;

typedef struct {
  char id_number[20];      /* valid GB 11643 resident ID */
  char bad_id[20];         /* the same number with one digit mistyped (check fails) */
  char name[16];
  char phone[12];
} tl_sim_person_t;

typedef struct {
  char code[48];           /* a barcode: at most 32 characters in practice */
} tl_sim_code_t;

typedef struct {
  int64_t at;              /* event time, ms from the start */
  int64_t send;            /* when the device sends it (== at unless offline then) */
  uint32_t seq;            /* creation order: ties are broken by it */
  int device;              /* index into devices */
  uint8_t type;            /* TL_SIM_* type */
  uint8_t expect;          /* TL_SIM_EXPECT_* */
  uint8_t provokes;        /* TL_SIM_PROVOKE_* */
  uint8_t result;          /* tube.result: TL_SIM_NEGATIVE/POSITIVE/INVALID */
  uint8_t reason;          /* tube.reject: index into tl_sim_reject_reasons */
  uint8_t bad_id;          /* sample.add: send the person's bad_id */
  int capacity;            /* tube.open */
  int count;               /* tube.seal, box.seal: the operator's count; -1 none */
  int tube;                /* index into tubes, or -1 */
  int box;                 /* index into boxes, or -1 */
  int person;              /* sample.add: index into persons */
  int lab;                 /* box.seal, box.deliver: lab device index, or -1 */
  int ntubes;              /* box.pack, box.receive: how many tubes ... */
  int tubes_at;            /* ... at plan->refs[tubes_at ...] */
  double ct;               /* tube.result positive: Ct value of the N gene, else 0 */
  char id[37];             /* event id (UUID v4 from the seeded generator) */
} tl_sim_event_t;

/* What the plan does, counted by the model: the figures the server must end with. */
typedef struct {
  int persons;             /* distinct persons sampled */
  int persons_returned;    /* persons whose status ends negative or positive */
  int persons_positive;    /* persons whose status ends positive */
  int samples;             /* accepted sample.add */
  int tubes;               /* tubes opened */
  int tubes_pooled;        /* of which opened with capacity > 1 */
  int tubes_single;        /* of which capacity 1 */
  int tubes_resulted;
  int tubes_rejected;
  int tubes_lost;          /* left out at receipt (tube_missing): never resulted */
  int boxes;
  int results[3];          /* by TL_SIM_NEGATIVE/POSITIVE/INVALID */
  int followups;           /* follow-ups opened (one per person of a positive pool, an
                              invalid or a rejected tube) */
  int refusals[TL_SIM_NEXPECT];  /* expected refusals by code ([0] unused) */
  int provoked[TL_SIM_NPROVOKE]; /* anomalies provoked by type ([0] unused) */
  int offline_devices;
  int late_events;         /* events sent after their time (offline devices) */
  int64_t duration_ms;     /* time of the last event */
} tl_sim_counts_t;

typedef struct {
  tl_sim_device_t *devices;
  int ndevices;
  int nsites, ncouriers, nlabs; /* devices are sites, then couriers, then labs */
  tl_sim_person_t *persons;
  int npersons;
  tl_sim_code_t *tubes;    /* tube barcodes */
  int ntubes;
  tl_sim_code_t *boxes;    /* box barcodes */
  int nboxes;
  tl_sim_event_t *events;  /* sorted by (send, at, seq): the order to send */
  int nevents;
  int *refs;               /* tube index lists of box.pack and box.receive events */
  int nrefs;
  tl_sim_counts_t counts;
} tl_sim_plan_t;

/* Builds the plan. Returns 0, or -1 when out of memory or a parameter is out of range (plan
 * then empty). The plan owns everything it points to; free it with tl_sim_plan_free. */
int tl_sim_plan_make(const tl_sim_params_t *p, tl_sim_plan_t *plan) __attribute__((warn_unused_result));
void tl_sim_plan_free(tl_sim_plan_t *plan);

/* Wire names. */
extern const char *const tl_sim_type_names[TL_SIM_NTYPES];
extern const char *const tl_sim_expect_codes[TL_SIM_NEXPECT];   /* [0] = "accepted" */
extern const char *const tl_sim_provoke_names[TL_SIM_NPROVOKE]; /* [0] = "" */
extern const char *const tl_sim_result_names[3];
extern const char *const tl_sim_reject_reasons[3];

#endif
