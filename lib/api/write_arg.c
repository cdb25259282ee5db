/* The argument of tl_write and tl_write_plain (sql/004_ingest.sql and its later versions,
 * sql/025_write_plain.sql): every new or changed fact of a group as one JSON object,
 *
 *   {"events": [...], "persons": [...], "tubes": [...], "boxes": [...], "samples": [...],
 *    "receipts": [...], "attribution": [...]}
 *
 * written straight into a buffer. (It was a cJSON tree printed at the end: for a group of
 * 1,000 events some 40,000 nodes, each allocated and freed, a third of the daemon's CPU in
 * batched ingest; docs/PERFORMANCE.md, eighth update.) The slots are only read: a group that
 * fails is tried again batch by batch (ingest.c), with the same bodies and persons rows. */
#include "api/ingest.h"

#include "base/strmap.h"
#include "domain/validate.h"
#include "http/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A writer into b that keeps the first error: after one, every write does nothing. */
typedef struct {
  tl_buf_t *b;
  int rc;
  int fresh; /* no field yet in the object being written */
} jw_t;

static void raw(jw_t *w, const char *s) {
  if (w->rc == 0) w->rc = tl_buf_puts(w->b, s);
}

static void open_row(jw_t *w, int first) {
  raw(w, first ? "{" : ",{");
  w->fresh = 1;
}

static void key(jw_t *w, const char *k) {
  raw(w, w->fresh ? "\"" : ",\"");
  raw(w, k);
  raw(w, "\":");
  w->fresh = 0;
}

static void str(jw_t *w, const char *k, const char *v) {
  key(w, k);
  if (w->rc == 0) w->rc = tl_http_json_string(w->b, v);
}

/* A code, or null when empty. */
static void code(jw_t *w, const char *k, const char *v) {
  if (v[0]) {
    str(w, k, v);
  } else {
    key(w, k);
    raw(w, "null");
  }
}

/* A time, or null when unset (0). */
static void time_at(jw_t *w, const char *k, int64_t ms) {
  char text[TL_TIME_TEXT_MAX];
  if (ms == 0 || tl_time_format(ms, 0, text) != 0) {
    key(w, k);
    raw(w, "null");
  } else {
    str(w, k, text);
  }
}

/* A count, or null when negative (not counted). */
static void count(jw_t *w, const char *k, int v) {
  key(w, k);
  if (v < 0) {
    raw(w, "null");
  } else if (w->rc == 0) {
    w->rc = tl_buf_appendf(w->b, "%d", v);
  }
}

static void value(jw_t *w, const char *k, const cJSON *v) {
  key(w, k);
  if (w->rc == 0) w->rc = tl_json_write(v, w->b);
}

static void tube_row(jw_t *w, const tl_tube_t *t, int first) {
  open_row(w, first);
  str(w, "code", t->code);
  str(w, "region", t->region);
  code(w, "round", t->round);
  code(w, "site", t->site);
  count(w, "capacity", t->capacity ? t->capacity : -1);
  time_at(w, "opened_at", t->opened_at);
  count(w, "sampled", t->sampled);
  time_at(w, "first_sample_at", t->first_sample_at);
  time_at(w, "sealed_at", t->sealed_at);
  count(w, "seal_count", t->seal_count);
  code(w, "box", t->box);
  time_at(w, "packed_at", t->packed_at);
  time_at(w, "received_at", t->received_at);
  code(w, "received_lab", t->received_lab);
  code(w, "received_box", t->received_box);
  time_at(w, "rejected_at", t->rejected_at);
  if (t->reject_reason) str(w, "reject_reason", tl_reason_name(t->reject_reason));
  code(w, "rejected_lab", t->rejected_lab);
  if (t->result) str(w, "result", tl_result_name(t->result));
  time_at(w, "result_at", t->result_at);
  code(w, "result_lab", t->result_lab);
  if (t->ct) {
    key(w, "ct");
    raw(w, t->ct); /* JSON text already */
  }
  raw(w, "}");
}

static void box_row(jw_t *w, const tl_box_t *x, int first) {
  open_row(w, first);
  str(w, "code", x->code);
  str(w, "region", x->region);
  code(w, "site", x->site);
  time_at(w, "packed_at", x->packed_at);
  time_at(w, "sealed_at", x->sealed_at);
  code(w, "dest_lab", x->dest_lab);
  count(w, "seal_count", x->seal_count);
  time_at(w, "picked_up_at", x->picked_up_at);
  code(w, "courier", x->courier);
  time_at(w, "delivered_at", x->delivered_at);
  code(w, "delivered_lab", x->delivered_lab);
  time_at(w, "received_at", x->received_at);
  code(w, "received_lab", x->received_lab);
  raw(w, "}");
}

/* That the event (at position ord among the group's slots) touched subject. */
static void attribute(jw_t *w, const char *subject, const tl__slot_t *s, int ord, int *n) {
  open_row(w, (*n)++ == 0);
  str(w, "subject", subject);
  str(w, "event", s->ev.id);
  str(w, "etype", tl_event_type_name(s->ev.type));
  count(w, "ord", ord);
  raw(w, "}");
}

/* The fields of a persons row that a later scan without them leaves as an earlier one gave. */
static const char *const kept[] = {"name_enc", "name_masked", "phone_enc", "phone_masked"};
#define NKEPT 4

/* One persons row per person of the group: the last scan's row, each kept field from the last
 * scan that gave it, and updated_at the arrival of the last scan's batch. */
typedef struct {
  int last;         /* the slot of the person's last scan */
  int keep[NKEPT];  /* the slot of the last scan with each kept field, or -1 */
} person_t;

static void person_row(jw_t *w, const person_t *p, tl__slot_t *const *slots,
                       tl__batch_t *const *owner, int first) {
  const cJSON *row = slots[p->last]->person_row, *f;
  open_row(w, first);
  cJSON_ArrayForEach(f, row) value(w, f->string, f);
  for (int k = 0; k < NKEPT; k++)
    if (p->keep[k] >= 0 && p->keep[k] != p->last)
      value(w, kept[k], cJSON_GetObjectItemCaseSensitive(slots[p->keep[k]]->person_row, kept[k]));
  time_at(w, "updated_at", owner[p->last]->now);
  raw(w, "}");
}

char *tl__write_arg(tl__slot_t *const *slots, tl__batch_t *const *owner, int nslots,
                    tl_world_t *world, int *naccepted) {
  static const char *const roles[] = {"collector", "courier", "lab"};
  tl_buf_t out, attr;
  tl_buf_init(&out);
  tl_buf_init(&attr);
  jw_t w = {&out, 0, 0}, a = {&attr, 0, 0};
  tl_strmap_t person_index; /* HMAC -> its entry in persons (keys: the slots' HMACs) */
  tl_strmap_init(&person_index);
  person_t *persons = malloc(((size_t)nslots + 1) * sizeof *persons);
  int npersons = 0, nattr = 0, nevents = 0;
  if (persons == NULL) w.rc = TL_ENOMEM;

  raw(&w, "{\"events\":[");
  for (int i = 0; i < nslots && w.rc == 0; i++) {
    const tl__slot_t *s = slots[i];
    const tl__batch_t *b = owner[i];
    if (s->state != TL__SLOT_ACCEPTED) continue;
    open_row(&w, nevents++ == 0);
    str(&w, "id", s->ev.id);
    str(&w, "type", tl_event_type_name(s->ev.type));
    time_at(&w, "at", s->ev.at);
    str(&w, "sender_role", roles[b->sender.role]);
    str(&w, "sender", b->sender.code);
    time_at(&w, "received_at", b->now);
    str(&w, "digest", s->digest);
    code(&w, "tube", s->ev.tube);
    code(&w, "box", s->ev.box);
    value(&w, "body", s->body);
    key(&w, "anomalies");
    raw(&w, "[]}");
    if (s->ev.tube[0]) attribute(&a, s->ev.tube, s, i, &nattr);
    if (s->ev.box[0]) attribute(&a, s->ev.box, s, i, &nattr);
    for (int k = 0; k < s->ev.ntubes; k++) attribute(&a, s->ev.tubes[k], s, i, &nattr);
    if (s->ev.type != TL_EV_SAMPLE_ADD) continue;
    const tl_tube_t *t = tl_world_tube(world, s->ev.tube, 0);
    char subject[TL_CODE_MAX + TL_HMAC_HEX + 2];
    snprintf(subject, sizeof subject, "%s/%s", t ? t->round : "", s->ev.person);
    attribute(&a, subject, s, i, &nattr);
    int p = tl_strmap_get(&person_index, s->ev.person);
    if (p < 0) { /* (the slot's HMAC lives as long as the map) */
      p = npersons++;
      for (int k = 0; k < NKEPT; k++) persons[p].keep[k] = -1;
      if (tl_strmap_put(&person_index, s->ev.person, p) != 0) w.rc = TL_ENOMEM;
    }
    persons[p].last = i;
    for (int k = 0; k < NKEPT; k++)
      if (cJSON_HasObjectItem(s->person_row, kept[k])) persons[p].keep[k] = i;
  }
  raw(&w, "],\"persons\":[");
  for (int p = 0; p < npersons; p++) person_row(&w, &persons[p], slots, owner, p == 0);
  raw(&w, "],\"tubes\":[");
  int n = 0;
  for (int i = 0; i < world->ntubes; i++)
    if (world->tubes[i].touched) tube_row(&w, &world->tubes[i], n++ == 0);
  raw(&w, "],\"boxes\":[");
  n = 0;
  for (int i = 0; i < world->nboxes; i++)
    if (world->boxes[i].touched) box_row(&w, &world->boxes[i], n++ == 0);
  raw(&w, "],\"samples\":[");
  for (int i = 0; i < world->nsamples; i++) {
    const tl_sample_t *sm = &world->samples[i];
    open_row(&w, i == 0);
    str(&w, "tube", sm->tube);
    str(&w, "person", sm->person);
    str(&w, "round", sm->round);
    str(&w, "site", sm->site);
    time_at(&w, "at", sm->at);
    str(&w, "event", sm->event);
    raw(&w, "}");
  }
  raw(&w, "],\"receipts\":[");
  for (int i = 0; i < world->nreceipts; i++) {
    const tl_receipt_t *r = &world->receipts[i];
    open_row(&w, i == 0);
    str(&w, "box", r->box);
    str(&w, "tube", r->tube);
    str(&w, "lab", r->lab);
    time_at(&w, "at", r->at);
    str(&w, "event", r->event);
    raw(&w, "}");
  }
  raw(&w, "],\"attribution\":[");
  if (w.rc == 0) w.rc = a.rc ? a.rc : tl_buf_append(&out, attr.data, attr.len);
  raw(&w, "]}");

  *naccepted = nevents;
  tl_strmap_dispose(&person_index);
  free(persons);
  tl_buf_dispose(&attr);
  if (w.rc != 0) {
    tl_buf_dispose(&out);
    return NULL;
  }
  tl_buf_cstr(&out); /* NUL-terminated */
  return tl_buf_steal(&out, NULL);
}
