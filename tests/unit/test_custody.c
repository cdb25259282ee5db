/* Unit tests of lib/domain/custody: the rules of DESIGN §4 as tables of event sequences, in
 * memory. Every step states the refusal it expects (or acceptance); a refused step must leave
 * the world exactly as it was. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "domain/custody.h"

#include <stdio.h>
#include <string.h>

enum { S1, S2, C1, C2, L1, L2, NSENDERS };
static const tl_sender_t senders[NSENDERS] = {
    [S1] = {TL_ROLE_COLLECTOR, "S1", "230126101"}, [S2] = {TL_ROLE_COLLECTOR, "S2", "230126102"},
    [C1] = {TL_ROLE_COURIER, "C1", "230126"},      [C2] = {TL_ROLE_COURIER, "C2", "230126"},
    [L1] = {TL_ROLE_LAB, "L1", "230126"},          [L2] = {TL_ROLE_LAB, "L2", "230126"},
};

typedef struct {
  int who;
  tl_event_type_t type;
  const char *tube, *box, *round, *lab, *tubes; /* tubes: comma-separated */
  int capacity, count;                           /* count 0 in the table = not given */
  char person;                                   /* a letter: a distinct person */
  tl_result_t result;
  int amend;
  int at;                                        /* minutes */
  const char *expect;                            /* refusal code, or NULL */
} step_t;

typedef struct {
  const char *name;
  step_t steps[12];
} case_t;

#define OPEN(w, t, r) {w, TL_EV_TUBE_OPEN, t, NULL, r, NULL, NULL, 0, 0, 0, 0, 0, 1
#define SAMPLE(w, t, p) {w, TL_EV_SAMPLE_ADD, t, NULL, NULL, NULL, NULL, 0, 0, p, 0, 0, 2
#define SEAL(w, t) {w, TL_EV_TUBE_SEAL, t, NULL, NULL, NULL, NULL, 0, 0, 0, 0, 0, 3
#define PACK(w, b, ts) {w, TL_EV_BOX_PACK, NULL, b, NULL, NULL, ts, 0, 0, 0, 0, 0, 4
#define BSEAL(w, b, l) {w, TL_EV_BOX_SEAL, NULL, b, NULL, l, NULL, 0, 0, 0, 0, 0, 5
#define PICKUP(w, b) {w, TL_EV_BOX_PICKUP, NULL, b, NULL, NULL, NULL, 0, 0, 0, 0, 0, 6
#define DELIVER(w, b, l) {w, TL_EV_BOX_DELIVER, NULL, b, NULL, l, NULL, 0, 0, 0, 0, 0, 7
#define RECEIVE(w, b, ts) {w, TL_EV_BOX_RECEIVE, NULL, b, NULL, NULL, ts, 0, 0, 0, 0, 0, 8
#define REJECT(w, t) {w, TL_EV_TUBE_REJECT, t, NULL, NULL, NULL, NULL, 0, 0, 0, 0, 0, 9
#define RESULT(w, t, r, a) {w, TL_EV_TUBE_RESULT, t, NULL, NULL, NULL, NULL, 0, 0, 0, r, a, 10
#define OK , NULL}
#define NO(code) , code}

static const case_t cases[] = {
    {"a sampling point's happy path",
     {OPEN(S1, "T00001", "R1") OK, SAMPLE(S1, "T00001", 'a') OK, SAMPLE(S1, "T00001", 'b') OK,
      SEAL(S1, "T00001") OK, PACK(S1, "B00001", "T00001") OK, BSEAL(S1, "B00001", "L1") OK}},
    {"tube codes are unique",
     {OPEN(S1, "T00001", "R1") OK, OPEN(S1, "T00001", "R1") NO("tube_exists"),
      OPEN(S2, "T00001", "R1") NO("tube_exists")}},
    {"rounds", {OPEN(S1, "T00001", "R9") NO("round_unknown"), OPEN(S1, "T00001", "RC") NO("round_closed"),
                OPEN(S1, "T00001", "RX") NO("out_of_scope")}},
    {"samples need an open tube of this site",
     {SAMPLE(S1, "T00001", 'a') NO("tube_unknown"), OPEN(S1, "T00001", "R1") OK,
      SAMPLE(S2, "T00001", 'a') NO("out_of_scope"), SAMPLE(S1, "T00001", 'a') OK,
      SAMPLE(S1, "T00001", 'a') NO("already_in_tube"), SEAL(S1, "T00001") OK,
      SAMPLE(S1, "T00001", 'b') NO("tube_sealed")}},
    {"a tube of 5 is full after five", {{S1, TL_EV_TUBE_OPEN, "T00005", NULL, "R1", NULL, NULL, 5, 0, 0, 0, 0, 1, NULL},
      SAMPLE(S1, "T00005", 'a') OK, SAMPLE(S1, "T00005", 'b') OK, SAMPLE(S1, "T00005", 'c') OK,
      SAMPLE(S1, "T00005", 'd') OK, SAMPLE(S1, "T00005", 'e') OK, SAMPLE(S1, "T00005", 'f') NO("tube_full")}},
    {"sealing", {OPEN(S1, "T00001", "R1") OK, SEAL(S1, "T00001") NO("tube_empty"),
                 SAMPLE(S1, "T00001", 'a') OK, SEAL(S2, "T00001") NO("out_of_scope"),
                 SEAL(S1, "T00001") OK, SEAL(S1, "T00001") NO("tube_sealed"),
                 SEAL(S1, "T00009") NO("tube_unknown")}},
    {"packing", {OPEN(S1, "T00001", "R1") OK, SAMPLE(S1, "T00001", 'a') OK,
                 PACK(S1, "B00001", "T00001") NO("tube_not_sealed"), SEAL(S1, "T00001") OK,
                 PACK(S1, "B00001", "T00001,T00009") NO("tube_unknown"),
                 PACK(S1, "B00001", "T00001") OK, PACK(S1, "B00001", "T00001") OK,
                 PACK(S1, "B00002", "T00001") NO("tube_in_other_box"),
                 PACK(S2, "B00001", "T00001") NO("out_of_scope")}},
    {"box seal", {BSEAL(S1, "B00001", "L1") NO("box_empty"), OPEN(S1, "T00001", "R1") OK,
                  SAMPLE(S1, "T00001", 'a') OK, SEAL(S1, "T00001") OK, PACK(S1, "B00001", "T00001") OK,
                  BSEAL(S1, "B00001", "L9") NO("lab_unknown"), BSEAL(S1, "B00001", "L1") OK,
                  BSEAL(S1, "B00001", "L1") NO("box_sealed"), PACK(S1, "B00001", "T00001") NO("box_sealed")}},
    {"roles", {RESULT(S1, "T00001", TL_RESULT_NEGATIVE, 0) NO("forbidden"), OPEN(L1, "T00001", "R1") NO("forbidden"),
               PICKUP(L1, "B00001") NO("forbidden"), RECEIVE(C1, "B00001", "T00001") NO("forbidden")}},
    {"hand-overs are tolerant: a pickup before the site's events",
     {PICKUP(C1, "B00001") OK, PICKUP(C2, "B00001") NO("out_of_scope"), PICKUP(C1, "B00001") OK,
      DELIVER(C2, "B00001", "L1") NO("out_of_scope"), DELIVER(C1, "B00001", "L9") NO("lab_unknown"),
      DELIVER(C1, "B00001", "L1") OK, OPEN(S1, "T00001", "R1") OK, SAMPLE(S1, "T00001", 'a') OK,
      SEAL(S1, "T00001") OK, PACK(S1, "B00001", "T00001") OK, BSEAL(S1, "B00001", "L1") OK}},
    {"labs: receipt, results, conflicts",
     {RECEIVE(L1, "B00001", "T00001,T00002") OK, RECEIVE(L2, "B00001", "T00003") NO("out_of_scope"),
      RECEIVE(L2, "B00002", "T00001") NO("out_of_scope"), RESULT(L2, "T00001", TL_RESULT_NEGATIVE, 0) NO("out_of_scope"),
      RESULT(L1, "T00001", TL_RESULT_NEGATIVE, 0) OK, RESULT(L1, "T00001", TL_RESULT_NEGATIVE, 0) OK,
      RESULT(L1, "T00001", TL_RESULT_POSITIVE, 0) NO("result_conflict"),
      RESULT(L1, "T00001", TL_RESULT_POSITIVE, 1) OK, REJECT(L2, "T00002") NO("out_of_scope"),
      REJECT(L1, "T00002") OK, DELIVER(L1, "B00003", "L2") NO("out_of_scope"), DELIVER(L1, "B00003", "") OK}},
    {"a result before any sampling is stored, and the site completes the tube later",
     {RESULT(L1, "T00001", TL_RESULT_POSITIVE, 0) OK, OPEN(S1, "T00001", "R1") OK,
      SAMPLE(S1, "T00001", 'a') OK, SEAL(S1, "T00001") OK}},
};

/* A world with rounds R1 (county, 10), RC (closed), RX (another county), labs L1 and L2. */
static void world_setup(tl_world_t *w) {
  tl_world_init(w);
  tl_round_t r1 = {"R1", 10, 0, "230126"}, rc = {"RC", 10, 1, "230126"}, rx = {"RX", 10, 0, "110101"};
  assert_int_equal(tl_world_add_round(w, &r1), 0);
  assert_int_equal(tl_world_add_round(w, &rc), 0);
  assert_int_equal(tl_world_add_round(w, &rx), 0);
  assert_int_equal(tl_world_add_lab(w, "L1"), 0);
  assert_int_equal(tl_world_add_lab(w, "L2"), 0);
}

/* A fingerprint of everything a rule may change. */
static unsigned long long world_hash(const tl_world_t *w) {
  unsigned long long h = 1469598103934665603ULL;
#define MIX(p, n)                                                                    \
  for (size_t k_ = 0; k_ < (n); k_++) h = (h ^ ((const unsigned char *)(p))[k_]) * 1099511628211ULL
  for (int i = 0; i < w->ntubes; i++) {
    tl_tube_t t = w->tubes[i];
    t.ct = NULL;
    t.persons = NULL;
    t.cappersons = 0;
    t.touched = 0;
    MIX(&t, sizeof t);
  }
  for (int i = 0; i < w->nboxes; i++) {
    tl_box_t b = w->boxes[i];
    b.touched = 0;
    MIX(&b, sizeof b);
  }
  MIX(&w->ntubes, sizeof w->ntubes);
  MIX(&w->nboxes, sizeof w->nboxes);
  MIX(&w->nsamples, sizeof w->nsamples);
  MIX(&w->nreceipts, sizeof w->nreceipts);
  return h;
}

static void run_step(tl_world_t *w, const step_t *s, const char *name, int n) {
  tl_event_t e;
  memset(&e, 0, sizeof e);
  tl_code_t tubes[8];
  e.type = s->type;
  snprintf(e.id, sizeof e.id, "00000000-0000-4000-8000-%012d", n);
  e.at = 1633654800000LL + (long long)s->at * 60000;
  snprintf(e.tube, sizeof e.tube, "%s", s->tube ? s->tube : "");
  snprintf(e.box, sizeof e.box, "%s", s->box ? s->box : "");
  snprintf(e.round, sizeof e.round, "%s", s->round ? s->round : "");
  snprintf(e.lab, sizeof e.lab, "%s", s->lab ? s->lab : "");
  e.capacity = s->capacity;
  e.count = s->count ? s->count : -1;
  memset(e.person, s->person ? s->person : '0', TL_HMAC_HEX);
  e.result = s->result;
  e.amend = s->amend;
  e.reason = TL_REASON_LEAK;
  if (s->tubes) {
    char list[128];
    snprintf(list, sizeof list, "%s", s->tubes);
    char *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t && e.ntubes < 8; t = strtok_r(NULL, ",", &save))
      snprintf(tubes[e.ntubes++], sizeof tubes[0], "%s", t);
    e.tubes = (const tl_code_t *)tubes;
  }
  unsigned long long before = world_hash(w);
  tl_refusal_t r = tl_custody_apply(w, &senders[s->who], &e);
  if ((r.code == NULL) != (s->expect == NULL) || (r.code && strcmp(r.code, s->expect) != 0))
    fail_msg("%s, step %d: expected %s, got %s", name, n, s->expect ? s->expect : "accepted",
             r.code ? r.code : "accepted");
  if (r.code) {
    assert_non_null(r.message);
    if (world_hash(w) != before) fail_msg("%s, step %d: a refused event changed the world", name, n);
  }
}

static void test_tables(void **state) {
  (void)state;
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    tl_world_t w;
    world_setup(&w);
    for (int i = 0; i < 12 && cases[c].steps[i].type + cases[c].steps[i].at != 0; i++)
      run_step(&w, &cases[c].steps[i], cases[c].name, i);
    tl_world_dispose(&w);
  }
}

static void test_facts(void **state) {
  (void)state;
  tl_world_t w;
  world_setup(&w);
  const step_t steps[] = {OPEN(S1, "T00001", "R1") OK, SAMPLE(S1, "T00001", 'a') OK,
                          SAMPLE(S1, "T00001", 'b') OK, SEAL(S1, "T00001") OK,
                          PACK(S1, "B00001", "T00001") OK, BSEAL(S1, "B00001", "L1") OK};
  for (int i = 0; i < 6; i++) run_step(&w, &steps[i], "facts", i);
  tl_tube_t *t = tl_world_tube(&w, "T00001", 0);
  assert_non_null(t);
  assert_int_equal(t->capacity, 10); /* the round's ratio */
  assert_int_equal(t->sampled, 2);
  assert_string_equal(t->region, "230126101");
  assert_string_equal(t->box, "B00001");
  assert_int_equal(w.nsamples, 2);
  tl_box_t *b = tl_world_box(&w, "B00001", 0);
  assert_int_equal(b->packed, 1);
  assert_string_equal(b->dest_lab, "L1");
  tl_world_dispose(&w);
}

/* The world finds every tube and box it holds, through the growths of its arrays (each moves
 * them, and the index borrows their codes), and creates nothing on a lookup. */
static void test_world_index(void **state) {
  (void)state;
  tl_world_t w;
  tl_world_init(&w);
  char code[16];
  for (int i = 0; i < 1500; i++) {
    snprintf(code, sizeof code, "T%05d", i);
    tl_tube_t *t = tl_world_tube(&w, code, 1);
    assert_non_null(t);
    t->sampled = i;
    snprintf(code, sizeof code, "B%05d", i);
    tl_box_t *b = tl_world_box(&w, code, 1);
    assert_non_null(b);
    b->packed = i;
  }
  for (int i = 1499; i >= 0; i--) {
    snprintf(code, sizeof code, "T%05d", i);
    tl_tube_t *t = tl_world_tube(&w, code, 1); /* found, not created again */
    assert_non_null(t);
    assert_string_equal(t->code, code);
    assert_int_equal(t->sampled, i);
    snprintf(code, sizeof code, "B%05d", i);
    tl_box_t *b = tl_world_box(&w, code, 0);
    assert_non_null(b);
    assert_int_equal(b->packed, i);
  }
  assert_int_equal(w.ntubes, 1500);
  assert_int_equal(w.nboxes, 1500);
  assert_null(tl_world_tube(&w, "T99999", 0));
  assert_null(tl_world_box(&w, "T00001", 0)); /* a tube's code is not a box */
  assert_int_equal(w.ntubes, 1500);
  tl_world_dispose(&w);
}

/* Hand-over facts keep the earliest event time whatever order they arrive in. */
static void test_earliest_wins(void **state) {
  (void)state;
  int64_t got[2];
  for (int order = 0; order < 2; order++) {
    tl_world_t w;
    world_setup(&w);
    step_t early = DELIVER(C1, "B00001", "L1") OK, late = DELIVER(C1, "B00001", "L2") OK;
    early.at = 30;
    late.at = 40;
    run_step(&w, order ? &late : &early, "earliest", 0);
    run_step(&w, order ? &early : &late, "earliest", 1);
    tl_box_t *b = tl_world_box(&w, "B00001", 0);
    got[order] = b->delivered_at;
    assert_string_equal(b->delivered_lab, "L1");
    tl_world_dispose(&w);
  }
  assert_true(got[0] == got[1]);
}

static void test_names(void **state) {
  (void)state;
  for (int t = 0; t < TL_EV_COUNT; t++)
    assert_int_equal(tl_event_type_parse(tl_event_type_name((tl_event_type_t)t)), t);
  assert_int_equal(tl_event_type_parse("Tube.open"), -1);
  assert_int_equal(tl_result_parse("positive"), TL_RESULT_POSITIVE);
  assert_int_equal(tl_result_parse(""), -1);
  assert_int_equal(tl_reason_parse("insufficient"), TL_REASON_INSUFFICIENT);
  assert_int_equal(tl_role_parse("supervisor"), TL_ROLE_SUPERVISOR);
  assert_true(tl_region_contains("230126", "230126101"));
  assert_false(tl_region_contains("230126101", "230126"));
  assert_false(tl_region_contains("", "230126"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tables),
      cmocka_unit_test(test_facts),
      cmocka_unit_test(test_world_index),
      cmocka_unit_test(test_earliest_wins),
      cmocka_unit_test(test_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
