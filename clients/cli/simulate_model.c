/* The screening-round model of simulate_model.h: persons, sites, couriers and labs as a
 * discrete-event simulation over a heap of timed actions, run once to the end before anything
 * is sent. Every random draw comes from one xoshiro256** generator seeded with the run's seed
 * (and event ids from a second one that also mixes in the round and county, so two rounds
 * with the same seed never share an event id). No floating-point result feeds a decision that
 * could differ between machines except through log() in the arrival times, which glibc
 * computes identically on every x86-64 and arm64 build we run. */
#include "simulate_model.h"

#include "domain/validate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const tl_sim_type_names[TL_SIM_NTYPES] = {
    "tube.open", "sample.add",  "tube.seal",   "box.pack",    "box.seal",
    "box.pickup", "box.deliver", "box.receive", "tube.reject", "tube.result"};
const char *const tl_sim_expect_codes[TL_SIM_NEXPECT] = {"accepted", "invalid_person", "tube_full",
                                                         "already_in_tube"};
const char *const tl_sim_provoke_names[TL_SIM_NPROVOKE] = {"", "person_repeat", "tube_missing",
                                                           "wrong_lab"};
const char *const tl_sim_result_names[3] = {"negative", "positive", "invalid"};
const char *const tl_sim_reject_reasons[3] = {"leak", "insufficient", "unlabeled"};

#define SEC 1000LL
#define MIN (60 * SEC)
#define BOX_MAX 50               /* tubes in a transfer box */
#define COURIER_INTERVAL (45 * MIN)
#define STEP (3 * SEC)           /* one scan at a sampling point */

/* ---------- random numbers: splitmix64 seeding xoshiro256** ---------- */

typedef struct {
  uint64_t s[4];
} rng_t;

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static void rng_seed(rng_t *r, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng_t *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

/* Uniform in [0, 1). */
static double rng_unit(rng_t *r) { return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

/* Uniform in [0, n). The modulo bias is below 2^-40 for every n used here. */
static int rng_below(rng_t *r, int n) { return n <= 1 ? 0 : (int)(rng_next(r) % (uint64_t)n); }

/* A duration uniform in [lo, hi) minutes, in whole seconds. */
static int64_t rng_minutes(rng_t *r, double lo, double hi) {
  return (int64_t)((lo + (hi - lo) * rng_unit(r)) * 60.0) * SEC;
}

static uint64_t fnv1a(const char *s, uint64_t h) {
  for (; s && *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
  return h;
}

/* ---------- the simulation's state ---------- */

enum { A_ARRIVAL, A_SITE_CLOSE, A_COURIER_LOOP, A_COURIER_VISIT, A_COURIER_DELIVER, A_LAB_RECEIVE, A_LAB_RESULTS };

enum { F_REPEAT = 1, F_FOLLOWUP = 2, F_BADID = 4, F_FORGET = 8 };

typedef struct {
  int64_t t;
  uint32_t seq;
  int kind, a, b, c;
} action_t;

typedef struct {
  int *v;
  int n, cap;
} ivec_t;

typedef struct {
  int open_tube;        /* the pooled tube being filled, or -1 */
  int cur_box;          /* the box being packed, or -1 */
  int64_t busy;         /* the operator's next free moment: the site's events are serial */
  int pending;          /* arrivals scheduled and not yet served */
  int unresolved;       /* tubes opened and not yet resulted, rejected or lost */
  int forget_next;      /* the operator will forget to seal the next full tube */
  int closed;           /* regular sampling is over (follow-ups still come) */
  ivec_t sealed;        /* sealed boxes waiting for the courier */
  int courier, lab;     /* courier and destination lab (indices within their role) */
  double weight;        /* share of arrivals */
  int64_t last_arrival; /* of regular persons, repeats included; -1 none */
  int nth;              /* its number within its township, for its name */
} site_t;

typedef struct {
  int site, capacity, n;
  int *persons;         /* capacity entries */
  int box;
  int result;           /* decided at receipt */
  uint8_t followup;     /* a single tube answering a follow-up */
  uint8_t rejected, lost;
} tube_t;

typedef struct {
  int site, dest;       /* site and destination lab */
  int tubes[BOX_MAX];
  int n;
  int64_t sealed_at;    /* -1 while open */
} box_t;

typedef struct {
  ivec_t sites;         /* the sites it tours, in order */
  ivec_t bag;           /* boxes picked up, not yet delivered */
  int64_t busy, loop_start;
} courier_t;

typedef struct {
  int64_t busy;
  int64_t delay;        /* receipt to result, at least */
} lab_t;

typedef struct {
  int first_tube;
  int samples, lost;    /* samples taken, of which in tubes lost at receipt */
  uint8_t repeater;     /* comes twice: its tubes are always negative and never lost */
  uint8_t truly_positive;
} pstate_t;

typedef struct {
  const tl_sim_params_t *p;
  tl_sim_plan_t *plan;
  rng_t rng, idrng;
  int failed;           /* out of memory */
  action_t *heap;
  int nheap, capheap;
  uint32_t aseq, eseq;
  site_t *sites;
  courier_t *couriers;
  lab_t *labs;
  tube_t *tubes;
  int captubes;
  box_t *boxes;
  int capboxes;
  pstate_t *ps;
  int capevents, caprefs, captubecodes, capboxcodes;
  int missing_done, wrong_done;
  char tag[24];         /* barcode prefix derived from the round */
} gen_t;

static int grow(gen_t *g, void **p, int *cap, int need, size_t size) {
  if (need <= *cap) return 0;
  int nc = *cap ? *cap : 64;
  while (nc < need) nc *= 2;
  void *np = realloc(*p, (size_t)nc * size);
  if (np == NULL) {
    g->failed = 1;
    return -1;
  }
  memset((char *)np + (size_t)*cap * size, 0, (size_t)(nc - *cap) * size);
  *p = np;
  *cap = nc;
  return 0;
}

static void ivec_push(gen_t *g, ivec_t *v, int x) {
  if (grow(g, (void **)&v->v, &v->cap, v->n + 1, sizeof *v->v) == 0) v->v[v->n++] = x;
}

/* ---------- the action heap (ordered by time, then creation) ---------- */

static int before(const action_t *a, const action_t *b) {
  return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void schedule(gen_t *g, int64_t t, int kind, int a, int b, int c) {
  if (grow(g, (void **)&g->heap, &g->capheap, g->nheap + 1, sizeof *g->heap) != 0) return;
  int i = g->nheap++;
  action_t x = {t, g->aseq++, kind, a, b, c};
  while (i > 0 && before(&x, &g->heap[(i - 1) / 2])) {
    g->heap[i] = g->heap[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  g->heap[i] = x;
}

static action_t pop(gen_t *g) {
  action_t top = g->heap[0], last = g->heap[--g->nheap];
  int i = 0;
  for (;;) {
    int l = 2 * i + 1, r = l + 1, m = i;
    const action_t *mv = &last;
    if (l < g->nheap && before(&g->heap[l], mv)) m = l, mv = &g->heap[l];
    if (r < g->nheap && before(&g->heap[r], mv)) m = r;
    if (m == i) break;
    g->heap[i] = g->heap[m];
    i = m;
  }
  if (g->nheap > 0) g->heap[i] = last;
  return top;
}

/* ---------- events ---------- */

static int dev_site(const gen_t *g, int s) { (void)g; return s; }
static int dev_courier(const gen_t *g, int c) { return g->p->nsites + c; }
static int dev_lab(const gen_t *g, int l) { return g->p->nsites + g->p->ncouriers + l; }

static void make_uuid(rng_t *r, char out[37]) {
  unsigned char b[16];
  uint64_t x = rng_next(r), y = rng_next(r);
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(x >> (8 * i)), b[8 + i] = (unsigned char)(y >> (8 * i));
  tl_uuid_format(b, 4, out);
}

/* A new event; the pointer is valid until the next emit. On allocation failure returns a
 * scratch event that is thrown away (g->failed is set and the plan is discarded). */
static tl_sim_event_t *emit(gen_t *g, int64_t at, int device, int type) {
  static tl_sim_event_t scratch;
  tl_sim_plan_t *pl = g->plan;
  if (grow(g, (void **)&pl->events, &g->capevents, pl->nevents + 1, sizeof *pl->events) != 0)
    return &scratch;
  tl_sim_event_t *e = &pl->events[pl->nevents++];
  memset(e, 0, sizeof *e);
  e->at = e->send = at;
  e->seq = g->eseq++;
  e->device = device;
  e->type = (uint8_t)type;
  e->tube = e->box = e->person = e->lab = -1;
  e->count = -1;
  e->tubes_at = -1;
  make_uuid(&g->idrng, e->id);
  if (at > pl->counts.duration_ms) pl->counts.duration_ms = at;
  return e;
}

/* Appends n tube indices to the plan's refs; returns their offset (or -1). */
static int refs_add(gen_t *g, const int *tubes, int n) {
  tl_sim_plan_t *pl = g->plan;
  if (grow(g, (void **)&pl->refs, &g->caprefs, pl->nrefs + n, sizeof *pl->refs) != 0) return -1;
  int at = pl->nrefs;
  memcpy(pl->refs + at, tubes, (size_t)n * sizeof *tubes);
  pl->nrefs += n;
  return at;
}

/* ---------- tubes and boxes at a sampling point ---------- */

static int new_tube(gen_t *g, int site, int capacity) {
  tl_sim_plan_t *pl = g->plan;
  if (grow(g, (void **)&g->tubes, &g->captubes, pl->ntubes + 1, sizeof *g->tubes) != 0 ||
      grow(g, (void **)&pl->tubes, &g->captubecodes, pl->ntubes + 1, sizeof *pl->tubes) != 0)
    return -1;
  int i = pl->ntubes++;
  tube_t *t = &g->tubes[i];
  memset(t, 0, sizeof *t);
  t->site = site;
  t->capacity = capacity;
  t->box = -1;
  if ((t->persons = calloc((size_t)capacity, sizeof *t->persons)) == NULL) g->failed = 1;
  snprintf(pl->tubes[i].code, sizeof pl->tubes[i].code, "%s-T%05d", g->tag, i + 1);
  pl->counts.tubes++;
  if (capacity > 1) pl->counts.tubes_pooled++;
  else pl->counts.tubes_single++;
  g->sites[site].unresolved++;
  return i;
}

static int new_box(gen_t *g, int site) {
  tl_sim_plan_t *pl = g->plan;
  if (grow(g, (void **)&g->boxes, &g->capboxes, pl->nboxes + 1, sizeof *g->boxes) != 0 ||
      grow(g, (void **)&pl->boxes, &g->capboxcodes, pl->nboxes + 1, sizeof *pl->boxes) != 0)
    return -1;
  int i = pl->nboxes++;
  box_t *b = &g->boxes[i];
  memset(b, 0, sizeof *b);
  b->site = site;
  b->dest = g->sites[site].lab;
  b->sealed_at = -1;
  snprintf(pl->boxes[i].code, sizeof pl->boxes[i].code, "%s-B%04d", g->tag, i + 1);
  pl->counts.boxes++;
  return i;
}

/* The site seals its current box for its lab (at 50 tubes, or when the courier comes). */
static void seal_box(gen_t *g, int s, int64_t *t) {
  site_t *st = &g->sites[s];
  box_t *b = &g->boxes[st->cur_box];
  tl_sim_event_t *e = emit(g, *t, dev_site(g, s), TL_SIM_BOX_SEAL);
  e->box = st->cur_box;
  e->lab = dev_lab(g, b->dest);
  e->count = b->n;
  b->sealed_at = *t;
  *t += STEP;
  ivec_push(g, &st->sealed, st->cur_box);
  st->cur_box = -1;
}

static void seal_and_pack(gen_t *g, int s, int tube, int64_t *t) {
  site_t *st = &g->sites[s];
  tube_t *tb = &g->tubes[tube];
  tl_sim_event_t *e = emit(g, *t, dev_site(g, s), TL_SIM_TUBE_SEAL);
  e->tube = tube;
  e->count = tb->n;
  *t += STEP;
  if (st->cur_box < 0) st->cur_box = new_box(g, s);
  if (st->cur_box < 0) return;
  box_t *b = &g->boxes[st->cur_box];
  e = emit(g, *t, dev_site(g, s), TL_SIM_BOX_PACK);
  e->box = st->cur_box;
  e->ntubes = 1;
  e->tubes_at = refs_add(g, &tube, 1);
  *t += STEP;
  b->tubes[b->n++] = tube;
  tb->box = st->cur_box;
  if (b->n == BOX_MAX) seal_box(g, s, t);
}

static void add_sample(gen_t *g, int s, int tube, int person, int64_t *t, int provokes) {
  tube_t *tb = &g->tubes[tube];
  tl_sim_event_t *e = emit(g, *t, dev_site(g, s), TL_SIM_SAMPLE_ADD);
  e->tube = tube;
  e->person = person;
  e->provokes = (uint8_t)provokes;
  *t += STEP;
  tb->persons[tb->n++] = person;
  pstate_t *ps = &g->ps[person];
  if (ps->samples++ == 0) {
    ps->first_tube = tube;
    g->plan->counts.persons++;
  }
  g->plan->counts.samples++;
  if (provokes) g->plan->counts.provoked[provokes]++;
}

static void open_tube(gen_t *g, int s, int tube, int64_t *t) {
  tl_sim_event_t *e = emit(g, *t, dev_site(g, s), TL_SIM_TUBE_OPEN);
  e->tube = tube;
  e->capacity = g->tubes[tube].capacity;
  *t += STEP;
}

static int tube_holds(const gen_t *g, int tube, int person) {
  const tube_t *tb = &g->tubes[tube];
  for (int i = 0; i < tb->n; i++)
    if (tb->persons[i] == person) return 1;
  return 0;
}

static void arrival(gen_t *g, int64_t now, int s, int person, int flags) {
  site_t *st = &g->sites[s];
  int64_t t = now > st->busy ? now : st->busy;
  st->pending--;
  if (flags & F_FOLLOWUP) {
    /* a single tube, sealed and packed at once */
    int tube = new_tube(g, s, 1);
    if (tube < 0) return;
    g->tubes[tube].followup = 1;
    open_tube(g, s, tube, &t);
    add_sample(g, s, tube, person, &t, TL_SIM_PROVOKE_NONE);
    seal_and_pack(g, s, tube, &t);
    st->busy = t;
    return;
  }
  int tube = st->open_tube;
  if (tube >= 0 && g->tubes[tube].n == g->tubes[tube].capacity) {
    /* the operator forgot to seal the full tube: the scan is refused, then fixed */
    tl_sim_event_t *e = emit(g, t, dev_site(g, s), TL_SIM_SAMPLE_ADD);
    e->tube = tube;
    e->person = person;
    e->expect = TL_SIM_EXPECT_TUBE_FULL;
    g->plan->counts.refusals[TL_SIM_EXPECT_TUBE_FULL]++;
    t += STEP;
    seal_and_pack(g, s, tube, &t);
    tube = st->open_tube = -1;
  }
  if (tube < 0) {
    if ((tube = st->open_tube = new_tube(g, s, g->p->pool)) < 0) return;
    open_tube(g, s, tube, &t);
  }
  if ((flags & F_REPEAT) && tube_holds(g, tube, person)) {
    /* back so soon that their first tube is still open: scanned into it again, refused */
    tl_sim_event_t *e = emit(g, t, dev_site(g, s), TL_SIM_SAMPLE_ADD);
    e->tube = tube;
    e->person = person;
    e->expect = TL_SIM_EXPECT_ALREADY_IN_TUBE;
    g->plan->counts.refusals[TL_SIM_EXPECT_ALREADY_IN_TUBE]++;
    st->busy = t + STEP;
    return;
  }
  if (flags & F_BADID) {
    /* a digit mistyped: the check character no longer matches, the scan is refused */
    tl_sim_event_t *e = emit(g, t, dev_site(g, s), TL_SIM_SAMPLE_ADD);
    e->tube = tube;
    e->person = person;
    e->bad_id = 1;
    e->expect = TL_SIM_EXPECT_INVALID_PERSON;
    g->plan->counts.refusals[TL_SIM_EXPECT_INVALID_PERSON]++;
    t += 4 * STEP;
  }
  add_sample(g, s, tube, person, &t, (flags & F_REPEAT) ? TL_SIM_PROVOKE_PERSON_REPEAT : TL_SIM_PROVOKE_NONE);
  if (flags & F_FORGET) st->forget_next = 1;
  tube_t *tb = &g->tubes[tube];
  if (tb->n == tb->capacity) {
    if (st->forget_next) {
      st->forget_next = 0;
    } else {
      seal_and_pack(g, s, tube, &t);
      st->open_tube = -1;
    }
  }
  st->busy = t;
}

static void site_close(gen_t *g, int64_t now, int s) {
  site_t *st = &g->sites[s];
  int64_t t = now > st->busy ? now : st->busy;
  if (st->open_tube >= 0) seal_and_pack(g, s, st->open_tube, &t);
  st->open_tube = -1;
  st->closed = 1;
  st->busy = t;
}

/* ---------- couriers ---------- */

static int courier_has_work(const gen_t *g, int c) {
  const courier_t *cr = &g->couriers[c];
  for (int i = 0; i < cr->sites.n; i++) {
    const site_t *st = &g->sites[cr->sites.v[i]];
    if (st->pending > 0 || !st->closed || st->open_tube >= 0 || st->cur_box >= 0 || st->sealed.n > 0 ||
        st->unresolved > 0)
      return 1;
  }
  return cr->bag.n > 0;
}

static void courier_visit(gen_t *g, int64_t now, int c, int k) {
  courier_t *cr = &g->couriers[c];
  int s = cr->sites.v[k];
  site_t *st = &g->sites[s];
  int64_t t = now > cr->busy ? now : cr->busy;
  if (st->cur_box >= 0) {
    /* the site seals what it has packed so far and hands it over */
    int64_t ts = t > st->busy ? t : st->busy;
    seal_box(g, s, &ts);
    st->busy = ts;
  }
  for (int i = 0; i < st->sealed.n; i++) {
    int b = st->sealed.v[i];
    int64_t tp = (g->boxes[b].sealed_at > t ? g->boxes[b].sealed_at : t) + MIN;
    tl_sim_event_t *e = emit(g, tp, dev_courier(g, c), TL_SIM_BOX_PICKUP);
    e->box = b;
    t = tp;
    ivec_push(g, &cr->bag, b);
  }
  st->sealed.n = 0;
  cr->busy = t;
  if (k + 1 < cr->sites.n)
    schedule(g, t + rng_minutes(&g->rng, 8, 20), A_COURIER_VISIT, c, k + 1, 0);
  else
    schedule(g, t + rng_minutes(&g->rng, 15, 30), A_COURIER_DELIVER, c, 0, 0);
}

static void courier_deliver(gen_t *g, int64_t now, int c) {
  courier_t *cr = &g->couriers[c];
  int64_t t = now > cr->busy ? now : cr->busy;
  int nlabs = g->p->nlabs;
  /* where each box goes: its destination, except when the courier gets it wrong */
  int *to = calloc((size_t)(cr->bag.n ? cr->bag.n : 1), sizeof *to);
  if (to == NULL) {
    g->failed = 1;
    return;
  }
  for (int i = 0; i < cr->bag.n; i++) {
    const box_t *b = &g->boxes[cr->bag.v[i]];
    to[i] = b->dest;
    double u = rng_unit(&g->rng);
    if (g->p->mistakes > 0 && nlabs >= 2 && (!g->wrong_done || u < g->p->mistakes * 2)) {
      to[i] = (b->dest + 1 + rng_below(&g->rng, nlabs - 1)) % nlabs;
      g->wrong_done = 1;
    }
  }
  int first = 1;
  for (int l = 0; l < nlabs; l++) {
    int any = 0;
    for (int i = 0; i < cr->bag.n; i++) {
      if (to[i] != l) continue;
      if (!any && !first) t += rng_minutes(&g->rng, 10, 20);
      any = 1;
      int b = cr->bag.v[i];
      tl_sim_event_t *e = emit(g, t, dev_courier(g, c), TL_SIM_BOX_DELIVER);
      e->box = b;
      e->lab = dev_lab(g, l);
      if (l != g->boxes[b].dest) {
        e->provokes = TL_SIM_PROVOKE_WRONG_LAB;
        g->plan->counts.provoked[TL_SIM_PROVOKE_WRONG_LAB]++;
      }
      schedule(g, t + rng_minutes(&g->rng, 5, 15), A_LAB_RECEIVE, l, b, 0);
      t += 30 * SEC;
    }
    if (any) first = 0;
  }
  free(to);
  cr->bag.n = 0;
  cr->busy = t;
  if (courier_has_work(g, c)) {
    int64_t next = t + rng_minutes(&g->rng, 10, 20);
    if (next < cr->loop_start + COURIER_INTERVAL) next = cr->loop_start + COURIER_INTERVAL;
    schedule(g, next, A_COURIER_LOOP, c, 0, 0);
  }
}

/* ---------- labs ---------- */

static void call_back(gen_t *g, int tube, int64_t t) {
  tube_t *tb = &g->tubes[tube];
  for (int i = 0; i < tb->n; i++) {
    schedule(g, t + rng_minutes(&g->rng, 30, 120), A_ARRIVAL, tb->site, tb->persons[i], F_FOLLOWUP);
    g->sites[tb->site].pending++;
    g->plan->counts.followups++;
  }
}

static int tube_has_repeater(const gen_t *g, const tube_t *tb) {
  for (int i = 0; i < tb->n; i++)
    if (g->ps[tb->persons[i]].repeater) return 1;
  return 0;
}

static void lab_receive(gen_t *g, int64_t now, int l, int b) {
  lab_t *lb = &g->labs[l];
  box_t *bx = &g->boxes[b];
  int64_t t = now > lb->busy ? now : lb->busy;
  /* a tube left behind: in the manifest, not in the box */
  int lost = -1;
  if (g->p->mistakes > 0 && bx->n >= 2) {
    int eligible[BOX_MAX], ne = 0;
    for (int i = 0; i < bx->n; i++) {
      const tube_t *tb = &g->tubes[bx->tubes[i]];
      if (!tb->followup && !tube_has_repeater(g, tb)) eligible[ne++] = bx->tubes[i];
    }
    double u = rng_unit(&g->rng);
    if (ne > 0 && (!g->missing_done || u < g->p->mistakes * 3)) {
      lost = eligible[rng_below(&g->rng, ne)];
      g->missing_done = 1;
    }
  }
  int scanned[BOX_MAX], ns = 0;
  for (int i = 0; i < bx->n; i++)
    if (bx->tubes[i] != lost) scanned[ns++] = bx->tubes[i];
  tl_sim_event_t *e = emit(g, t, dev_lab(g, l), TL_SIM_BOX_RECEIVE);
  e->box = b;
  e->ntubes = ns;
  e->tubes_at = refs_add(g, scanned, ns);
  if (lost >= 0) {
    e->provokes = TL_SIM_PROVOKE_TUBE_MISSING;
    g->plan->counts.provoked[TL_SIM_PROVOKE_TUBE_MISSING]++;
    tube_t *tb = &g->tubes[lost];
    tb->lost = 1;
    g->plan->counts.tubes_lost++;
    g->sites[tb->site].unresolved--;
    for (int i = 0; i < tb->n; i++) g->ps[tb->persons[i]].lost++;
  }
  t += 10 * SEC;
  const tl_sim_params_t *p = g->p;
  for (int i = 0; i < ns; i++) {
    tube_t *tb = &g->tubes[scanned[i]];
    double u = rng_unit(&g->rng);
    if (tb->followup) {
      tb->result = g->ps[tb->persons[0]].truly_positive ? TL_SIM_POSITIVE : TL_SIM_NEGATIVE;
    } else if (tube_has_repeater(g, tb)) {
      tb->result = TL_SIM_NEGATIVE;
    } else if (u < p->reject_rate) {
      tb->rejected = 1;
      e = emit(g, t, dev_lab(g, l), TL_SIM_TUBE_REJECT);
      e->tube = scanned[i];
      e->reason = (uint8_t)rng_below(&g->rng, 3);
      t += 5 * SEC;
      g->plan->counts.tubes_rejected++;
      g->sites[tb->site].unresolved--;
      call_back(g, scanned[i], t);
    } else if (u < p->reject_rate + p->invalid_rate) {
      tb->result = TL_SIM_INVALID;
    } else if (u < p->reject_rate + p->invalid_rate + p->positive_rate) {
      tb->result = TL_SIM_POSITIVE;
    } else {
      tb->result = TL_SIM_NEGATIVE;
    }
  }
  lb->busy = t;
  schedule(g, t + lb->delay + rng_minutes(&g->rng, 0, 60), A_LAB_RESULTS, l, b, 0);
}

static void lab_results(gen_t *g, int64_t now, int l, int b) {
  lab_t *lb = &g->labs[l];
  box_t *bx = &g->boxes[b];
  int64_t t = now > lb->busy ? now : lb->busy;
  for (int i = 0; i < bx->n; i++) {
    int ti = bx->tubes[i];
    tube_t *tb = &g->tubes[ti];
    if (tb->lost || tb->rejected) continue;
    tl_sim_event_t *e = emit(g, t, dev_lab(g, l), TL_SIM_TUBE_RESULT);
    e->tube = ti;
    e->result = (uint8_t)tb->result;
    if (tb->result == TL_SIM_POSITIVE) e->ct = 24.0 + (double)rng_below(&g->rng, 120) / 10.0;
    t += 2 * SEC;
    g->plan->counts.results[tb->result]++;
    g->plan->counts.tubes_resulted++;
    if (tb->result == TL_SIM_POSITIVE && tb->capacity > 1) {
      g->ps[tb->persons[rng_below(&g->rng, tb->n)]].truly_positive = 1;
      call_back(g, ti, t);
    } else if (tb->result == TL_SIM_INVALID) {
      call_back(g, ti, t);
    } else if (tb->result == TL_SIM_POSITIVE) {
      g->plan->counts.persons_positive++;
    }
    g->sites[tb->site].unresolved--;
  }
  lb->busy = t;
}

/* ---------- persons ---------- */

static const char *const SURNAMES[] = {"王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐",
                                       "孙", "胡", "朱", "高", "林", "何", "郭", "马", "罗", "梁", "宋",
                                       "郑", "谢", "韩", "唐", "冯", "于", "董", "萧", "程", "曹"};
static const char *const GIVEN[] = {"伟", "芳", "娜", "秀", "英", "敏", "静", "丽", "强", "磊", "军",
                                    "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "霞", "平", "刚",
                                    "桂", "兰", "玉", "萍", "红", "云", "飞", "鹏", "辉", "华", "建",
                                    "国", "庆", "春", "梅", "海", "燕", "波", "宁", "斌", "浩", "宇"};
#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Days since 1970-01-01 → civil date (H. Hinnant's algorithm). */
static void civil(int64_t z, int *y, int *m, int *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = (int)(yoe + era * 400 + (*m <= 2));
}

static char check_char(const char *first17) {
  static const int w[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
  int sum = 0;
  for (int i = 0; i < 17; i++) sum += (first17[i] - '0') * w[i];
  return "10X98765432"[sum % 11];
}

static int make_persons(gen_t *g) {
  const tl_sim_params_t *p = g->p;
  tl_sim_plan_t *pl = g->plan;
  int n = p->npersons;
  pl->persons = calloc((size_t)n, sizeof *pl->persons);
  g->ps = calloc((size_t)n, sizeof *g->ps);
  /* an open-addressed set of the 17 leading digits: every ID number is distinct */
  size_t cap = 16;
  while (cap < (size_t)n * 2) cap *= 2;
  uint64_t *set = calloc(cap, sizeof *set);
  if (pl->persons == NULL || g->ps == NULL || set == NULL) {
    free(set);
    return -1;
  }
  pl->npersons = n;
  for (int i = 0; i < n; i++) {
    tl_sim_person_t *x = &pl->persons[i];
    char first[40];
    for (;;) {
      /* born 1940-01-01 .. 2019-12-31 (days since the epoch: -10958 .. 18261) */
      int y, m, d;
      civil(-10958 + rng_below(&g->rng, 18262 + 10958), &y, &m, &d);
      snprintf(first, sizeof first, "%.6s%04d%02d%02d%03d", p->county, y, m, d, 1 + rng_below(&g->rng, 999));
      uint64_t key = strtoull(first, NULL, 10) + 1;
      size_t h = (size_t)(key * 0x9e3779b97f4a7c15ULL) & (cap - 1);
      while (set[h] && set[h] != key) h = (h + 1) & (cap - 1);
      if (set[h] == key) continue;
      set[h] = key;
      break;
    }
    char c = check_char(first);
    snprintf(x->id_number, sizeof x->id_number, "%.17s%c", first, c);
    /* one digit of the sequence number mistyped: every weight of MOD 11-2 is prime to 11,
     * so a single wrong digit always breaks the check character */
    snprintf(x->bad_id, sizeof x->bad_id, "%s", x->id_number);
    int pos = 14 + rng_below(&g->rng, 3);
    x->bad_id[pos] = (char)('0' + (x->bad_id[pos] - '0' + 1 + rng_below(&g->rng, 9)) % 10);
    int ng = 1 + (rng_below(&g->rng, 3) > 0);
    snprintf(x->name, sizeof x->name, "%s%s%s", SURNAMES[rng_below(&g->rng, NELEM(SURNAMES))],
             GIVEN[rng_below(&g->rng, NELEM(GIVEN))], ng > 1 ? GIVEN[rng_below(&g->rng, NELEM(GIVEN))] : "");
    snprintf(x->phone, sizeof x->phone, "13%d%08d", rng_below(&g->rng, 10), rng_below(&g->rng, 100000000));
  }
  free(set);
  return 0;
}

/* k distinct values of [0, n) in random order, into out. */
static int pick(gen_t *g, int n, int k, int *out) {
  int *perm = malloc((size_t)(n ? n : 1) * sizeof *perm);
  if (perm == NULL) return -1;
  for (int i = 0; i < n; i++) perm[i] = i;
  if (k > n) k = n;
  for (int i = 0; i < k; i++) {
    int j = i + rng_below(&g->rng, n - i), x = perm[i];
    perm[i] = perm[j];
    perm[j] = x;
    out[i] = perm[i];
  }
  free(perm);
  return k;
}

static int mistakes_of(const tl_sim_params_t *p, double weight, int cap) {
  if (p->mistakes <= 0) return 0;
  long k = lround((double)p->npersons * p->mistakes * weight);
  if (k < 1) k = 1;
  if (k > cap) k = cap;
  return (int)k;
}

/* ---------- the plan ---------- */

static int by_send(const void *a, const void *b) {
  const tl_sim_event_t *x = a, *y = b;
  if (x->send != y->send) return x->send < y->send ? -1 : 1;
  if (x->at != y->at) return x->at < y->at ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int devices(gen_t *g) {
  const tl_sim_params_t *p = g->p;
  tl_sim_plan_t *pl = g->plan;
  static const char *const LAB_KINDS[] = {"人民医院检验科", "疾病预防控制中心实验室", "中医医院检验科"};
  pl->ndevices = p->nsites + p->ncouriers + p->nlabs;
  pl->nsites = p->nsites;
  pl->ncouriers = p->ncouriers;
  pl->nlabs = p->nlabs;
  if ((pl->devices = calloc((size_t)pl->ndevices, sizeof *pl->devices)) == NULL) return -1;
  int *per_town = calloc((size_t)p->ntownships, sizeof *per_town);
  if (per_town == NULL) return -1;
  for (int i = 0; i < pl->ndevices; i++) {
    tl_sim_device_t *d = &pl->devices[i];
    d->township = -1;
    d->offline_from = d->offline_until = -1;
    if (i < p->nsites) {
      d->role = TL_SIM_COLLECTOR;
      d->index = i;
      d->township = i % p->ntownships;
      int nth = ++per_town[d->township];
      snprintf(d->code, sizeof d->code, "%s-S%02d", p->prefix, i + 1);
      snprintf(d->name, sizeof d->name, "%s第%d采样点", p->township_names[d->township], nth);
    } else if (i < p->nsites + p->ncouriers) {
      d->role = TL_SIM_COURIER;
      d->index = i - p->nsites;
      snprintf(d->code, sizeof d->code, "%s-C%d", p->prefix, d->index + 1);
      snprintf(d->name, sizeof d->name, "%s转运%d组", p->county_name, d->index + 1);
    } else {
      d->role = TL_SIM_LAB;
      d->index = i - p->nsites - p->ncouriers;
      if (d->index < 3)
        snprintf(d->name, sizeof d->name, "%s%s", p->county_name, LAB_KINDS[d->index]);
      else
        snprintf(d->name, sizeof d->name, "%s第%d第三方检测实验室", p->county_name, d->index - 2);
      snprintf(d->code, sizeof d->code, "%s-L%d", p->prefix, d->index + 1);
    }
  }
  free(per_town);
  return 0;
}

static int valid_params(const tl_sim_params_t *p) {
  return p->county && strlen(p->county) == 6 && p->round && p->round[0] && p->prefix && p->county_name &&
         p->ntownships > 0 && p->township_names && (p->pool == 1 || p->pool == 5 || p->pool == 8 ||
         p->pool == 10 || p->pool == 20) && p->nsites >= 1 && p->nlabs >= 1 && p->ncouriers >= 1 &&
         p->npersons >= 1 && p->rate > 0 && p->positive_rate >= 0 && p->invalid_rate >= 0 &&
         p->reject_rate >= 0 && p->positive_rate + p->invalid_rate + p->reject_rate <= 1 && p->mistakes >= 0;
}

static void gen_free(gen_t *g) {
  for (int i = 0; g->tubes && i < g->plan->ntubes; i++) free(g->tubes[i].persons);
  for (int i = 0; g->sites && i < g->p->nsites; i++) free(g->sites[i].sealed.v);
  for (int i = 0; g->couriers && i < g->p->ncouriers; i++) {
    free(g->couriers[i].sites.v);
    free(g->couriers[i].bag.v);
  }
  free(g->tubes);
  free(g->boxes);
  free(g->sites);
  free(g->couriers);
  free(g->labs);
  free(g->ps);
  free(g->heap);
}

int tl_sim_plan_make(const tl_sim_params_t *p, tl_sim_plan_t *plan) {
  memset(plan, 0, sizeof *plan);
  if (!valid_params(p)) return -1;
  gen_t g;
  memset(&g, 0, sizeof g);
  g.p = p;
  g.plan = plan;
  rng_seed(&g.rng, p->seed);
  rng_seed(&g.idrng, fnv1a(p->county, fnv1a(p->round, 0xcbf29ce484222325ULL)) ^ p->seed);
  if (strlen(p->round) <= 20)
    snprintf(g.tag, sizeof g.tag, "%s", p->round);
  else
    snprintf(g.tag, sizeof g.tag, "%08llx", (unsigned long long)(fnv1a(p->round, 0xcbf29ce484222325ULL) & 0xffffffffULL));

  g.sites = calloc((size_t)p->nsites, sizeof *g.sites);
  g.couriers = calloc((size_t)p->ncouriers, sizeof *g.couriers);
  g.labs = calloc((size_t)p->nlabs, sizeof *g.labs);
  int n = p->npersons;
  int64_t *arr_t = malloc((size_t)n * sizeof *arr_t);
  int *arr_s = malloc((size_t)n * sizeof *arr_s), *sel = malloc((size_t)n * sizeof *sel);
  int *flags = calloc((size_t)n, sizeof *flags);
  if (g.sites == NULL || g.couriers == NULL || g.labs == NULL || arr_t == NULL || arr_s == NULL ||
      sel == NULL || flags == NULL || devices(&g) != 0 || make_persons(&g) != 0)
    goto fail;

  double wsum = 0;
  for (int s = 0; s < p->nsites; s++) {
    site_t *st = &g.sites[s];
    st->open_tube = st->cur_box = -1;
    st->last_arrival = -1;
    st->courier = s % p->ncouriers;
    st->lab = s % p->nlabs;
    st->weight = 0.5 + rng_unit(&g.rng);
    wsum += st->weight;
    ivec_push(&g, &g.couriers[st->courier].sites, s);
  }
  for (int l = 0; l < p->nlabs; l++) g.labs[l].delay = rng_minutes(&g.rng, 40, 90);

  /* regular arrivals: a Poisson process county-wide, sites by weight */
  double t = 0;
  for (int i = 0; i < n; i++) {
    t += -log(1.0 - rng_unit(&g.rng)) / p->rate * 60000.0;
    arr_t[i] = (int64_t)t;
    double u = rng_unit(&g.rng) * wsum;
    int s = 0;
    while (s + 1 < p->nsites && u >= g.sites[s].weight) u -= g.sites[s++].weight;
    arr_s[i] = s;
  }
  int64_t window = arr_t[n - 1];

  /* mistakes: mistyped IDs, forgotten seals, persons who come twice */
  int k = mistakes_of(p, 0.5, n / 4 + 1);
  k = pick(&g, n, k, sel);
  for (int i = 0; i < k; i++) flags[sel[i]] |= F_BADID;
  k = pick(&g, n, mistakes_of(p, 0.2, n / 4 + 1), sel);
  for (int i = 0; i < k; i++) flags[sel[i]] |= F_FORGET;
  for (int i = 0; i < n; i++) {
    schedule(&g, arr_t[i], A_ARRIVAL, arr_s[i], i, flags[i]);
    g.sites[arr_s[i]].pending++;
    if (arr_t[i] > g.sites[arr_s[i]].last_arrival) g.sites[arr_s[i]].last_arrival = arr_t[i];
  }
  int first80 = n * 4 / 5 > 0 ? n * 4 / 5 : 1;
  k = pick(&g, first80, mistakes_of(p, 0.3, first80), sel);
  for (int i = 0; i < k; i++) {
    int j = sel[i];
    int64_t when = arr_t[j] + rng_minutes(&g.rng, 20, 60);
    g.ps[j].repeater = 1;
    schedule(&g, when, A_ARRIVAL, arr_s[j], j, F_REPEAT);
    g.sites[arr_s[j]].pending++;
    if (when > g.sites[arr_s[j]].last_arrival) g.sites[arr_s[j]].last_arrival = when;
  }
  for (int s = 0; s < p->nsites; s++) {
    if (g.sites[s].last_arrival < 0) g.sites[s].closed = 1;
    else schedule(&g, g.sites[s].last_arrival + 2 * MIN, A_SITE_CLOSE, s, 0, 0);
  }
  for (int c = 0; c < p->ncouriers; c++) schedule(&g, COURIER_INTERVAL, A_COURIER_LOOP, c, 0, 0);

  /* phones that go offline: some sites during sampling, the first courier on a tour */
  if (p->mistakes > 0) {
    int ko = pick(&g, p->nsites, p->nsites / 5 > 0 ? p->nsites / 5 : 1, sel);
    for (int i = 0; i < ko; i++) {
      tl_sim_device_t *d = &plan->devices[sel[i]];
      d->offline_from = (int64_t)((0.15 + 0.45 * rng_unit(&g.rng)) * (double)window);
      d->offline_until = d->offline_from + rng_minutes(&g.rng, 30, 90);
    }
    tl_sim_device_t *d = &plan->devices[p->nsites];
    d->offline_from = COURIER_INTERVAL + (int64_t)(0.5 * rng_unit(&g.rng) * (double)window);
    d->offline_until = d->offline_from + rng_minutes(&g.rng, 45, 100);
  }

  /* run */
  while (g.nheap > 0 && !g.failed) {
    action_t a = pop(&g);
    switch (a.kind) {
    case A_ARRIVAL: arrival(&g, a.t, a.a, a.b, a.c); break;
    case A_SITE_CLOSE: site_close(&g, a.t, a.a); break;
    case A_COURIER_LOOP:
      g.couriers[a.a].loop_start = a.t;
      if (g.couriers[a.a].sites.n > 0)
        schedule(&g, a.t + rng_minutes(&g.rng, 5, 15), A_COURIER_VISIT, a.a, 0, 0);
      break;
    case A_COURIER_VISIT: courier_visit(&g, a.t, a.a, a.b); break;
    case A_COURIER_DELIVER: courier_deliver(&g, a.t, a.a); break;
    case A_LAB_RECEIVE: lab_receive(&g, a.t, a.a, a.b); break;
    case A_LAB_RESULTS: lab_results(&g, a.t, a.a, a.b); break;
    default: abort(); /* every action kind is handled above */
    }
  }
  if (g.failed) goto fail;

  /* what the model ends with */
  for (int i = 0; i < n; i++)
    if (g.ps[i].samples > g.ps[i].lost) plan->counts.persons_returned++;
  for (int i = 0; i < plan->ndevices; i++)
    if (plan->devices[i].offline_from >= 0) plan->counts.offline_devices++;
  for (int i = 0; i < plan->nevents; i++) {
    tl_sim_event_t *e = &plan->events[i];
    const tl_sim_device_t *d = &plan->devices[e->device];
    if (d->offline_from >= 0 && e->at >= d->offline_from && e->at < d->offline_until) {
      e->send = d->offline_until;
      plan->counts.late_events++;
    }
    if (e->send > plan->counts.duration_ms) plan->counts.duration_ms = e->send;
  }
  qsort(plan->events, (size_t)plan->nevents, sizeof *plan->events, by_send);

  free(arr_t);
  free(arr_s);
  free(sel);
  free(flags);
  gen_free(&g);
  return 0;
fail:
  free(arr_t);
  free(arr_s);
  free(sel);
  free(flags);
  gen_free(&g);
  tl_sim_plan_free(plan);
  return -1;
}

void tl_sim_plan_free(tl_sim_plan_t *plan) {
  free(plan->devices);
  free(plan->persons);
  free(plan->tubes);
  free(plan->boxes);
  free(plan->events);
  free(plan->refs);
  memset(plan, 0, sizeof *plan);
}
