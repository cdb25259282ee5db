/* The custody rules of custody.h. Each event type has one function; refusals are returned
 * before the first change, so a refused event leaves the world as it was. */
#include "domain/custody.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const char *const event_names[TL_EV_COUNT] = {
    "tube.open",   "sample.add",  "tube.seal",   "box.pack",    "box.seal",
    "box.pickup",  "box.deliver", "box.receive", "tube.reject", "tube.result"};
static const char *const role_names[TL_ROLE_COUNT] = {"collector", "courier",    "lab",
                                                      "viewer",    "supervisor", "admin"};
static const char *const result_names[] = {"", "negative", "positive", "invalid"};
static const char *const reason_names[] = {"", "leak", "unlabeled", "insufficient", "other"};

static int parse_in(const char *const *names, int n, int first, const char *s) {
  for (int i = first; i < n; i++)
    if (strcmp(names[i], s) == 0) return i;
  return -1;
}

const char *tl_event_type_name(tl_event_type_t t) { return event_names[t]; }
int tl_event_type_parse(const char *s) { return parse_in(event_names, TL_EV_COUNT, 0, s); }
const char *tl_role_name(tl_role_t r) { return role_names[r]; }
int tl_role_parse(const char *s) { return parse_in(role_names, TL_ROLE_COUNT, 0, s); }
const char *tl_result_name(tl_result_t r) { return result_names[r]; }
int tl_result_parse(const char *s) { return parse_in(result_names, 4, 1, s); }
const char *tl_reason_name(tl_reason_t r) { return reason_names[r]; }
int tl_reason_parse(const char *s) { return parse_in(reason_names, 5, 1, s); }

int tl_event_allowed(tl_role_t role, tl_event_type_t t) {
  switch (t) {
  case TL_EV_TUBE_OPEN:
  case TL_EV_SAMPLE_ADD:
  case TL_EV_TUBE_SEAL:
  case TL_EV_BOX_PACK:
  case TL_EV_BOX_SEAL: return role == TL_ROLE_COLLECTOR;
  case TL_EV_BOX_PICKUP: return role == TL_ROLE_COURIER;
  case TL_EV_BOX_DELIVER: return role == TL_ROLE_COURIER || role == TL_ROLE_LAB;
  case TL_EV_BOX_RECEIVE:
  case TL_EV_TUBE_REJECT:
  case TL_EV_TUBE_RESULT: return role == TL_ROLE_LAB;
  case TL_EV_COUNT: break;
  }
  return 0;
}

int tl_region_contains(const char *region, const char *code) {
  size_t n = strlen(region);
  return n > 0 && strncmp(region, code, n) == 0;
}

/* ---------- the world ---------- */

void tl_world_init(tl_world_t *w) { memset(w, 0, sizeof *w); }

void tl_world_dispose(tl_world_t *w) {
  for (int i = 0; i < w->ntubes; i++) {
    free(w->tubes[i].ct);
    free(w->tubes[i].persons);
  }
  free(w->tubes);
  free(w->boxes);
  free(w->rounds);
  free(w->labs);
  free(w->samples);
  free(w->receipts);
  tl_strmap_dispose(&w->tube_index);
  tl_strmap_dispose(&w->box_index);
  tl_world_init(w);
}

/* Grows *arr (of elem bytes) so that one more fits. */
static int grow(void **arr, int *cap, int n, size_t elem) {
  if (n < *cap) return 0;
  int ncap = *cap ? *cap * 2 : 16;
  void *p = realloc(*arr, (size_t)ncap * elem);
  if (p == NULL) return TL_ENOMEM;
  *arr = p;
  *cap = ncap;
  return 0;
}

static void copy_code(tl_code_t dst, const char *src) {
  size_t n = strlen(src);
  if (n > TL_CODE_MAX) n = TL_CODE_MAX;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

_Static_assert(offsetof(tl_tube_t, code) == 0 && offsetof(tl_box_t, code) == 0,
               "the world's index reads a tube's or box's code at its start");

/* Indexes element n of arr (each elem bytes, its code at offset 0) in m, which holds the
 * elements [0, *indexed). Keys borrow the elements' codes: when the array has grown (it may
 * have moved), the index is rebuilt. Without memory the index stops short, and lookups scan
 * what it does not hold (find). */
static void index_add(tl_strmap_t *m, int *indexed, const char *arr, int n, size_t elem, int moved) {
  if (moved) {
    tl_strmap_dispose(m);
    tl_strmap_init(m);
    *indexed = 0;
    while (*indexed < n && tl_strmap_put(m, arr + (size_t)*indexed * elem, *indexed) == 0)
      (*indexed)++;
  }
  if (*indexed == n && tl_strmap_put(m, arr + (size_t)n * elem, n) == 0) (*indexed)++;
}

/* The position of code among the n elements of arr, or -1: by the index, then by a scan of
 * what it does not hold. */
static int find(const tl_strmap_t *m, int indexed, const char *arr, int n, size_t elem,
                const char *code) {
  int i = tl_strmap_get(m, code);
  if (i >= 0) return i;
  for (i = indexed; i < n; i++)
    if (strcmp(arr + (size_t)i * elem, code) == 0) return i;
  return -1;
}

tl_tube_t *tl_world_tube(tl_world_t *w, const char *code, int create) {
  int i = find(&w->tube_index, w->tubes_indexed, (const char *)w->tubes, w->ntubes,
               sizeof *w->tubes, code);
  if (i >= 0) return &w->tubes[i];
  int cap = w->captubes;
  if (!create || grow((void **)&w->tubes, &w->captubes, w->ntubes, sizeof *w->tubes) != 0)
    return NULL;
  tl_tube_t *t = &w->tubes[w->ntubes];
  memset(t, 0, sizeof *t);
  copy_code(t->code, code);
  t->seal_count = -1;
  index_add(&w->tube_index, &w->tubes_indexed, (const char *)w->tubes, w->ntubes, sizeof *w->tubes,
            w->captubes != cap);
  w->ntubes++;
  return t;
}

tl_box_t *tl_world_box(tl_world_t *w, const char *code, int create) {
  int i = find(&w->box_index, w->boxes_indexed, (const char *)w->boxes, w->nboxes,
               sizeof *w->boxes, code);
  if (i >= 0) return &w->boxes[i];
  int cap = w->capboxes;
  if (!create || grow((void **)&w->boxes, &w->capboxes, w->nboxes, sizeof *w->boxes) != 0)
    return NULL;
  tl_box_t *b = &w->boxes[w->nboxes];
  memset(b, 0, sizeof *b);
  copy_code(b->code, code);
  b->seal_count = -1;
  index_add(&w->box_index, &w->boxes_indexed, (const char *)w->boxes, w->nboxes, sizeof *w->boxes,
            w->capboxes != cap);
  w->nboxes++;
  return b;
}

int tl_world_add_round(tl_world_t *w, const tl_round_t *r) {
  if (grow((void **)&w->rounds, &w->caprounds, w->nrounds, sizeof *w->rounds) != 0)
    return TL_ENOMEM;
  w->rounds[w->nrounds++] = *r;
  return 0;
}

int tl_world_add_lab(tl_world_t *w, const char *code) {
  if (grow((void **)&w->labs, &w->caplabs, w->nlabs, sizeof *w->labs) != 0) return TL_ENOMEM;
  copy_code(w->labs[w->nlabs++], code);
  return 0;
}

int tl_tube_add_person(tl_tube_t *t, const char *hmac) {
  if (grow((void **)&t->persons, &t->cappersons, t->npersons, sizeof *t->persons) != 0)
    return TL_ENOMEM;
  memcpy(t->persons[t->npersons], hmac, TL_HMAC_HEX);
  t->persons[t->npersons++][TL_HMAC_HEX] = '\0';
  return 0;
}

static const tl_round_t *find_round(const tl_world_t *w, const char *code) {
  for (int i = 0; i < w->nrounds; i++)
    if (strcmp(w->rounds[i].code, code) == 0) return &w->rounds[i];
  return NULL;
}

static int lab_exists(const tl_world_t *w, const char *code) {
  for (int i = 0; i < w->nlabs; i++)
    if (strcmp(w->labs[i], code) == 0) return 1;
  return 0;
}

/* ---------- refusals ---------- */

#define ACCEPT ((tl_refusal_t){NULL, NULL})
#define REFUSE(c, m) ((tl_refusal_t){(c), (m)})
#define NOMEM REFUSE("internal", "The server ran out of memory.")

static const tl_refusal_t not_yours = {"out_of_scope", "This object belongs to another sender."};

/* ---------- sampling point events (strict) ---------- */

/* A tube as the sampling points built it: opened and owned by this site. */
static tl_refusal_t own_tube(tl_world_t *w, const tl_sender_t *s, const char *code, tl_tube_t **out) {
  tl_tube_t *t = tl_world_tube(w, code, 0);
  if (t == NULL || t->opened_at == 0) return REFUSE("tube_unknown", "No tube with this code was opened.");
  if (strcmp(t->site, s->code) != 0) return not_yours;
  *out = t;
  return ACCEPT;
}

static tl_refusal_t tube_open(tl_world_t *w, const tl_sender_t *s, const tl_event_t *e) {
  const tl_round_t *r = find_round(w, e->round);
  if (r == NULL) return REFUSE("round_unknown", "There is no round with this code.");
  if (!tl_region_contains(r->region, s->region))
    return REFUSE("out_of_scope", "This round does not cover the sampling point.");
  if (r->closed) return REFUSE("round_closed", "This round is closed.");
  tl_tube_t *t = tl_world_tube(w, e->tube, 0);
  if (t && t->opened_at != 0) return REFUSE("tube_exists", "A tube with this code was already opened.");
  if ((t = tl_world_tube(w, e->tube, 1)) == NULL) return NOMEM;
  copy_code(t->round, r->code);
  copy_code(t->site, s->code);
  memcpy(t->region, s->region, sizeof t->region);
  t->capacity = e->capacity ? e->capacity : r->pool_size;
  t->opened_at = e->at;
  t->touched = 1;
  return ACCEPT;
}

static tl_refusal_t sample_add(tl_world_t *w, const tl_sender_t *s, const tl_event_t *e) {
  tl_tube_t *t;
  tl_refusal_t rf = own_tube(w, s, e->tube, &t);
  if (rf.code) return rf;
  const tl_round_t *r = find_round(w, t->round);
  if (r && r->closed) return REFUSE("round_closed", "This round is closed.");
  if (t->sealed_at) return REFUSE("tube_sealed", "The tube is sealed.");
  if (t->sampled >= t->capacity) return REFUSE("tube_full", "The tube is full: seal it and open a new one.");
  for (int i = 0; i < t->npersons; i++)
    if (strcmp(t->persons[i], e->person) == 0)
      return REFUSE("already_in_tube", "This person is already in this tube.");
  if (grow((void **)&w->samples, &w->capsamples, w->nsamples, sizeof *w->samples) != 0 ||
      tl_tube_add_person(t, e->person) != 0)
    return NOMEM;
  tl_sample_t *sm = &w->samples[w->nsamples++];
  memset(sm, 0, sizeof *sm);
  copy_code(sm->tube, t->code);
  memcpy(sm->person, e->person, sizeof sm->person);
  copy_code(sm->round, t->round);
  copy_code(sm->site, t->site);
  sm->at = e->at;
  memcpy(sm->event, e->id, sizeof sm->event);
  t->sampled++;
  if (t->first_sample_at == 0 || e->at < t->first_sample_at) t->first_sample_at = e->at;
  t->touched = 1;
  return ACCEPT;
}

static tl_refusal_t tube_seal(tl_world_t *w, const tl_sender_t *s, const tl_event_t *e) {
  tl_tube_t *t;
  tl_refusal_t rf = own_tube(w, s, e->tube, &t);
  if (rf.code) return rf;
  if (t->sealed_at) return REFUSE("tube_sealed", "The tube is already sealed.");
  if (t->sampled == 0) return REFUSE("tube_empty", "An empty tube cannot be sealed.");
  t->sealed_at = e->at;
  t->seal_count = e->count;
  t->touched = 1;
  return ACCEPT;
}

/* A box as the sampling points see it: NULL when no site has packed it yet. */
static tl_refusal_t own_box(tl_world_t *w, const tl_sender_t *s, const char *code, tl_box_t **out) {
  tl_box_t *b = tl_world_box(w, code, 0);
  *out = NULL;
  if (b == NULL || b->site[0] == '\0') return ACCEPT;
  if (strcmp(b->site, s->code) != 0) return not_yours;
  if (b->sealed_at) return REFUSE("box_sealed", "The box is sealed.");
  *out = b;
  return ACCEPT;
}

static tl_refusal_t box_pack(tl_world_t *w, const tl_sender_t *s, const tl_event_t *e) {
  tl_box_t *b;
  tl_refusal_t rf = own_box(w, s, e->box, &b);
  if (rf.code) return rf;
  for (int i = 0; i < e->ntubes; i++) {
    tl_tube_t *t;
    rf = own_tube(w, s, e->tubes[i], &t);
    if (rf.code) return rf;
    if (!t->sealed_at) return REFUSE("tube_not_sealed", "A tube must be sealed before it is packed.");
    if (t->box[0] && strcmp(t->box, e->box) != 0)
      return REFUSE("tube_in_other_box", "The tube is already packed in another box.");
  }
  if (b == NULL && (b = tl_world_box(w, e->box, 1)) == NULL) return NOMEM;
  if (b->site[0] == '\0') {
    copy_code(b->site, s->code);
    memcpy(b->region, s->region, sizeof b->region);
    b->packed_at = e->at;
  }
  for (int i = 0; i < e->ntubes; i++) {
    tl_tube_t *t = tl_world_tube(w, e->tubes[i], 0); /* found above */
    if (t == NULL || t->box[0]) continue; /* packed again into the same box: nothing new */
    copy_code(t->box, e->box);
    t->packed_at = e->at;
    t->touched = 1;
    b->packed++;
  }
  b->touched = 1;
  return ACCEPT;
}

static tl_refusal_t box_seal(tl_world_t *w, const tl_sender_t *s, const tl_event_t *e) {
  tl_box_t *b;
  tl_refusal_t rf = own_box(w, s, e->box, &b);
  if (rf.code) return rf;
  if (b == NULL || b->packed == 0) return REFUSE("box_empty", "An empty box cannot be sealed.");
  if (!lab_exists(w, e->lab)) return REFUSE("lab_unknown", "There is no lab with this code.");
  copy_code(b->dest_lab, e->lab);
  b->sealed_at = e->at;
  b->seal_count = e->count;
  b->touched = 1;
  return ACCEPT;
}

/* ---------- hand-over and lab events (tolerant) ---------- */

/* The box of a hand-over: found, or a placeholder in the sender's county. */
static tl_box_t *handover_box(tl_world_t *w, const tl_sender_t *s, const char *code) {
  tl_box_t *b = tl_world_box(w, code, 1);
  if (b && b->region[0] == '\0') memcpy(b->region, s->region, sizeof b->region);
  return b;
}

static tl_refusal_t box_pickup(tl_world_t *w, const tl_sender_t *s, const tl_event_t *e) {
  tl_box_t *b = tl_world_box(w, e->box, 0);
  if (b && b->courier[0] && strcmp(b->courier, s->code) != 0) return not_yours;
  /* Scanned again: the earliest scan is the fact, whatever order the scans arrive in. */
  if (b && b->courier[0] && b->picked_up_at <= e->at) return ACCEPT;
  if ((b = handover_box(w, s, e->box)) == NULL) return NOMEM;
  copy_code(b->courier, s->code);
  b->picked_up_at = e->at;
  b->touched = 1;
  return ACCEPT;
}

static tl_refusal_t box_deliver(tl_world_t *w, const tl_sender_t *s, const tl_event_t *e) {
  const char *lab = s->role == TL_ROLE_LAB ? s->code : e->lab;
  if (s->role == TL_ROLE_LAB && e->lab[0] && strcmp(e->lab, s->code) != 0) return not_yours;
  if (!lab_exists(w, lab)) return REFUSE("lab_unknown", "There is no lab with this code.");
  tl_box_t *b = tl_world_box(w, e->box, 0);
  if (b && s->role == TL_ROLE_COURIER && b->courier[0] && strcmp(b->courier, s->code) != 0)
    return not_yours;
  if (b && b->delivered_at && b->delivered_at <= e->at) return ACCEPT; /* earliest wins */
  if ((b = handover_box(w, s, e->box)) == NULL) return NOMEM;
  copy_code(b->delivered_lab, lab);
  b->delivered_at = e->at;
  b->touched = 1;
  return ACCEPT;
}

/* The lab that owns a tube's lab facts, or "" when none has any. */
static const char *tube_lab(const tl_tube_t *t) {
  if (t->received_lab[0]) return t->received_lab;
  if (t->result_lab[0]) return t->result_lab;
  return t->rejected_lab;
}

static tl_refusal_t box_receive(tl_world_t *w, const tl_sender_t *s, const tl_event_t *e) {
  tl_box_t *b = tl_world_box(w, e->box, 0);
  if (b && b->received_lab[0] && strcmp(b->received_lab, s->code) != 0) return not_yours;
  for (int i = 0; i < e->ntubes; i++) {
    tl_tube_t *t = tl_world_tube(w, e->tubes[i], 0);
    if (t && tube_lab(t)[0] && strcmp(tube_lab(t), s->code) != 0) return not_yours;
  }
  if ((b = handover_box(w, s, e->box)) == NULL) return NOMEM;
  if (!b->received_at || e->at < b->received_at) {
    b->received_at = e->at;
    copy_code(b->received_lab, s->code);
    b->touched = 1;
  }
  for (int i = 0; i < e->ntubes; i++) {
    tl_tube_t *t = tl_world_tube(w, e->tubes[i], 1);
    if (t == NULL) return NOMEM;
    if (t->region[0] == '\0') memcpy(t->region, s->region, sizeof t->region);
    if (!t->received_at || e->at < t->received_at) {
      t->received_at = e->at;
      copy_code(t->received_lab, s->code);
      copy_code(t->received_box, e->box);
      t->touched = 1;
    }
    if (grow((void **)&w->receipts, &w->capreceipts, w->nreceipts, sizeof *w->receipts) != 0)
      return NOMEM;
    tl_receipt_t *r = &w->receipts[w->nreceipts++];
    memset(r, 0, sizeof *r);
    copy_code(r->box, e->box);
    copy_code(r->tube, e->tubes[i]);
    copy_code(r->lab, s->code);
    r->at = e->at;
    memcpy(r->event, e->id, sizeof r->event);
  }
  return ACCEPT;
}

static tl_refusal_t lab_tube(tl_world_t *w, const tl_sender_t *s, const char *code, tl_tube_t **out) {
  tl_tube_t *t = tl_world_tube(w, code, 0);
  if (t && tube_lab(t)[0] && strcmp(tube_lab(t), s->code) != 0) return not_yours;
  if ((t = tl_world_tube(w, code, 1)) == NULL) return NOMEM;
  if (t->region[0] == '\0') memcpy(t->region, s->region, sizeof t->region);
  *out = t;
  return ACCEPT;
}

static tl_refusal_t tube_reject(tl_world_t *w, const tl_sender_t *s, const tl_event_t *e) {
  tl_tube_t *t = tl_world_tube(w, e->tube, 0);
  if (t && tube_lab(t)[0] && strcmp(tube_lab(t), s->code) != 0) return not_yours;
  if (t && t->rejected_at && t->rejected_at <= e->at) return ACCEPT; /* earliest wins */
  tl_refusal_t rf = lab_tube(w, s, e->tube, &t);
  if (rf.code) return rf;
  t->rejected_at = e->at;
  t->reject_reason = e->reason;
  copy_code(t->rejected_lab, s->code);
  t->touched = 1;
  return ACCEPT;
}

static tl_refusal_t tube_result(tl_world_t *w, const tl_sender_t *s, const tl_event_t *e) {
  tl_tube_t *t = tl_world_tube(w, e->tube, 0);
  if (t && tube_lab(t)[0] && strcmp(tube_lab(t), s->code) != 0) return not_yours;
  if (t && t->result != TL_RESULT_NONE && !e->amend) {
    if (t->result == e->result) return ACCEPT; /* the same result again changes nothing */
    return REFUSE("result_conflict", "The tube already has another result; send it with amend.");
  }
  tl_refusal_t rf = lab_tube(w, s, e->tube, &t);
  if (rf.code) return rf;
  char *ct = NULL;
  if (e->ct && (ct = strdup(e->ct)) == NULL) return NOMEM;
  free(t->ct);
  t->ct = ct;
  t->result = e->result;
  t->result_at = e->at;
  copy_code(t->result_lab, s->code);
  t->touched = 1;
  return ACCEPT;
}

tl_refusal_t tl_custody_apply(tl_world_t *w, const tl_sender_t *sender, const tl_event_t *e) {
  if (!tl_event_allowed(sender->role, e->type))
    return REFUSE("forbidden", "This role may not send this event type.");
  switch (e->type) {
  case TL_EV_TUBE_OPEN: return tube_open(w, sender, e);
  case TL_EV_SAMPLE_ADD: return sample_add(w, sender, e);
  case TL_EV_TUBE_SEAL: return tube_seal(w, sender, e);
  case TL_EV_BOX_PACK: return box_pack(w, sender, e);
  case TL_EV_BOX_SEAL: return box_seal(w, sender, e);
  case TL_EV_BOX_PICKUP: return box_pickup(w, sender, e);
  case TL_EV_BOX_DELIVER: return box_deliver(w, sender, e);
  case TL_EV_BOX_RECEIVE: return box_receive(w, sender, e);
  case TL_EV_TUBE_REJECT: return tube_reject(w, sender, e);
  case TL_EV_TUBE_RESULT: return tube_result(w, sender, e);
  case TL_EV_COUNT: break;
  }
  return REFUSE("invalid_type", "Unknown event type.");
}
