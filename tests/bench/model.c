/* The benchmark's city model (model.h): registry shape and file, synthetic persons, and the
 * deterministic workload of events with the chains that order them. */
#include "model.h"

#include "domain/validate.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *const bm_type_names[BM_NTYPES] = {
    "tube.open", "sample.add", "tube.seal", "box.pack", "box.seal",
    "box.pickup", "box.deliver", "box.receive", "tube.result"};

double bm_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t bm_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------- registry ---------- */

/* Real names of 巴彦县's towns, reused with a number when there are more townships. */
static const char *const town_names[] = {
    "巴彦镇", "兴隆镇", "西集镇", "洼兴镇", "龙泉镇", "巴彦港镇", "龙庙镇", "万发镇", "天增镇",
    "黑山镇", "松花江乡", "富江乡", "华山乡", "丰乐乡", "德祥乡", "红光乡", "山后乡", "镇东乡"};
#define NTOWN_NAMES (int)(sizeof town_names / sizeof town_names[0])

void bm_township_code(const bm_registry_t *r, int k, char out[10]) {
  snprintf(out, 10, "%.6s%03u", r->county, (unsigned)(101 + k) % 1000u);
}

int bm_registry_shape(bm_registry_t *r, int townships, int sites, int couriers, int labs) {
  memset(r, 0, sizeof *r);
  if (townships < 1 || townships > 800 || sites < 1 || sites > 9999 || couriers < 1 ||
      couriers > 999 || labs < 1 || labs > 99) {
    fprintf(stderr, "model: bad registry sizes\n");
    return -1;
  }
  snprintf(r->county, sizeof r->county, "230126");
  snprintf(r->round, sizeof r->round, "BR1");
  r->ntownships = townships;
  r->nsites = sites;
  r->ncouriers = couriers;
  r->nlabs = labs;
  r->senders = calloc((size_t)(sites + couriers + labs), sizeof *r->senders);
  if (r->senders == NULL) return -1;
  for (int i = 0; i < sites; i++) {
    bm_sender_t *s = &r->senders[i];
    s->role = BM_COLLECTOR;
    snprintf(s->code, sizeof s->code, "BS%04d", i + 1);
    bm_township_code(r, i % townships, s->region);
  }
  for (int i = 0; i < couriers; i++) {
    bm_sender_t *s = &r->senders[sites + i];
    s->role = BM_COURIER;
    snprintf(s->code, sizeof s->code, "BC%03d", i + 1);
    snprintf(s->region, sizeof s->region, "%s", r->county);
  }
  for (int i = 0; i < labs; i++) {
    bm_sender_t *s = &r->senders[sites + couriers + i];
    s->role = BM_LAB;
    snprintf(s->code, sizeof s->code, "BL%02d", i + 1);
    snprintf(s->region, sizeof s->region, "%s", r->county);
  }
  return 0;
}

const char *bm_township_name(int k, char *buf, size_t cap) {
  if (k < NTOWN_NAMES) snprintf(buf, cap, "%s", town_names[k]);
  else snprintf(buf, cap, "%s%d", town_names[k % NTOWN_NAMES], k / NTOWN_NAMES + 1);
  return buf;
}

int bm_registry_save(const bm_registry_t *r, const char *path) {
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    fprintf(stderr, "model: %s: %s\n", path, strerror(errno));
    return -1;
  }
  static const char *const roles[] = {"collector", "courier", "lab"};
  fprintf(f, "county %s\nround %s\ntownships %d\nadmin %s\nviewer %s\n", r->county, r->round,
          r->ntownships, r->admin_token, r->viewer_token);
  for (int i = 0; i < r->nsites + r->ncouriers + r->nlabs; i++) {
    const bm_sender_t *s = &r->senders[i];
    fprintf(f, "sender %s %s %s %s\n", roles[s->role], s->code, s->region, s->token);
  }
  return fclose(f) == 0 ? 0 : -1;
}

int bm_registry_load(bm_registry_t *r, const char *path) {
  memset(r, 0, sizeof *r);
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    fprintf(stderr, "model: %s: %s\n", path, strerror(errno));
    return -1;
  }
  char line[512], a[64], b[64], c[64], d[128];
  int cap = 0, n = 0;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "county %6s", r->county) == 1) continue;
    if (sscanf(line, "round %32s", r->round) == 1) continue;
    if (sscanf(line, "townships %d", &r->ntownships) == 1) continue;
    if (sscanf(line, "admin %79s", r->admin_token) == 1) continue;
    if (sscanf(line, "viewer %79s", r->viewer_token) == 1) continue;
    if (sscanf(line, "sender %63s %63s %63s %127s", a, b, c, d) == 4) {
      if (n == cap) {
        cap = cap ? cap * 2 : 256;
        bm_sender_t *ns = realloc(r->senders, (size_t)cap * sizeof *ns);
        if (ns == NULL) break;
        r->senders = ns;
      }
      bm_sender_t *s = &r->senders[n++];
      memset(s, 0, sizeof *s);
      s->role = strcmp(a, "collector") == 0 ? BM_COLLECTOR : strcmp(a, "courier") == 0 ? BM_COURIER : BM_LAB;
      snprintf(s->code, sizeof s->code, "%.32s", b);
      snprintf(s->region, sizeof s->region, "%.9s", c);
      snprintf(s->token, sizeof s->token, "%.79s", d);
      if (s->role == BM_COLLECTOR) r->nsites++;
      else if (s->role == BM_COURIER) r->ncouriers++;
      else r->nlabs++;
    }
  }
  fclose(f);
  if (n == 0 || r->nsites == 0 || r->ncouriers == 0 || r->nlabs == 0) {
    fprintf(stderr, "model: %s: no complete registry\n", path);
    return -1;
  }
  return 0;
}

void bm_registry_dispose(bm_registry_t *r) {
  free(r->senders);
  memset(r, 0, sizeof *r);
}

/* ---------- synthetic persons ---------- */

/* Issuing regions of the synthetic ID numbers, one per block (Harbin's districts and counties). */
static const char *const id_regions[] = {
    "230126", "230102", "230103", "230104", "230108", "230109", "230110", "230111", "230112",
    "230113", "230123", "230124", "230125", "230127", "230128", "230129", "230183", "230184"};
#define NBLOCKS (int)(sizeof id_regions / sizeof id_regions[0])
/* Blocks past the regions reuse them with persons further on: 7 x 18 blocks of 4 M persons. */
#define BLOCK_SHIFTS 7
#define BLOCK_PERSONS 4000000L
#define ID_DAYS 29200L   /* birth dates 1940-01-01 + 0..29199 days */
#define ID_SEQS 999L     /* sequence numbers 001..999 */

static void civil_from_days(long z, int *y, int *m, int *d) {
  z += 719468;
  long era = (z >= 0 ? z : z - 146096) / 146097;
  long doe = z - era * 146097;
  long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  long yy = yoe + era * 400;
  long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  long mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = (int)(yy + (*m <= 2));
}

void bm_resident_id(int block, long i, char out[19]) {
  static const int weight[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
  static const char check[] = "10X98765432";
  const long space = ID_DAYS * ID_SEQS; /* 29,170,800 numbers per region */
  i += (long)(block / NBLOCKS % BLOCK_SHIFTS) * BLOCK_PERSONS;
  /* A bijection of [0, space): 7919 is prime and divides neither 2, 3, 5, 37 nor 73. */
  long k = (long)(((unsigned long long)(i % space) * 7919ULL + 12345ULL) % (unsigned long long)space);
  int y, m, d;
  civil_from_days(-10957 + k % ID_DAYS, &y, &m, &d); /* day 0 = 1940-01-01 */
  char tmp[64];
  snprintf(tmp, sizeof tmp, "%.6s%04d%02d%02d%03ld", id_regions[block % NBLOCKS], y % 10000, m, d, k / ID_DAYS + 1);
  memcpy(out, tmp, 17);
  int sum = 0;
  for (int j = 0; j < 17; j++) sum += (out[j] - '0') * weight[j];
  out[17] = check[sum % 11];
  out[18] = '\0';
}

static const char *const surnames[] = {
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "高", "林", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾"};
static const char *const given[] = {
    "伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛",
    "明", "超", "秀兰", "霞", "平", "刚", "桂英", "建华", "玉兰", "红", "海燕", "志强", "淑珍", "子涵", "浩然", "欣怡"};

/* ---------- workload ---------- */

typedef struct {
  uint64_t s;
} rng_t;

static uint64_t rng_next(rng_t *r) {
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

static double rng_unit(rng_t *r) { return (double)(rng_next(r) >> 11) / 9007199254740992.0; }

/* A UUID version 7 (RFC 9562), as the CLI makes them (clients/cli/journal.c): the event's time
 * in Unix milliseconds in the first 48 bits, then 74 seeded random bits, so that ids sort by
 * the time their events were made. */
static void make_uuid(rng_t *r, int64_t at_ms, char out[37]) {
  uint64_t a = ((uint64_t)at_ms << 16) | (rng_next(r) & 0xFFFFu), b = rng_next(r);
  unsigned char u[16];
  for (int i = 0; i < 8; i++) {
    u[i] = (unsigned char)(a >> (56 - 8 * i));
    u[8 + i] = (unsigned char)(b >> (56 - 8 * i));
  }
  tl_uuid_format(u, 7, out);
}

typedef struct {
  bm_workload_t *w;
  const bm_registry_t *reg;
  const bm_params_t *p;
  rng_t rng;
  int fail;
} gen_t;

static int grow(void **arr, int *cap, int n, size_t size) {
  if (n < *cap) return 0;
  int nc = *cap ? *cap * 2 : 4096;
  void *p = realloc(*arr, (size_t)nc * size);
  if (p == NULL) return -1;
  *arr = p;
  *cap = nc;
  return 0;
}

static int chain_open(gen_t *g, int sender, int waits) {
  bm_workload_t *w = g->w;
  if (grow((void **)&w->chains, &w->capchains, w->nchains, sizeof *w->chains) != 0) {
    g->fail = 1;
    return -1;
  }
  bm_chain_t *c = &w->chains[w->nchains];
  c->first = w->nevents;
  c->n = 0;
  c->sender = sender;
  c->waits = waits;
  return w->nchains++;
}

/* Appends an event to the chain being built (always the last one). fmt fills the fields after
 * "at"; returns the event's index. */
static int emit(gen_t *g, int chain, bm_type_t type, int64_t at, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int emit(gen_t *g, int chain, bm_type_t type, int64_t at, const char *fmt, ...) {
  bm_workload_t *w = g->w;
  if (g->fail || grow((void **)&w->events, &w->capevents, w->nevents, sizeof *w->events) != 0) {
    g->fail = 1;
    return -1;
  }
  bm_event_t *e = &w->events[w->nevents];
  memset(e, 0, sizeof *e);
  make_uuid(&g->rng, at, e->id);
  e->type = (uint8_t)type;
  e->at = at;
  e->sender = w->chains[chain].sender;
  e->then = -1;
  char when[TL_TIME_TEXT_MAX], fields[2048], buf[4096];
  if (tl_time_format(at, 480, when) != 0) {
    g->fail = 1;
    return -1;
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(fields, sizeof fields, fmt, ap);
  va_end(ap);
  int n = snprintf(buf, sizeof buf, "{\"id\":\"%s\",\"type\":\"%s\",\"at\":\"%s\",%s}", e->id,
                   bm_type_names[type], when, fields);
  if (n <= 0 || (size_t)n >= sizeof buf || (e->json = malloc((size_t)n + 1)) == NULL) {
    g->fail = 1;
    return -1;
  }
  memcpy(e->json, buf, (size_t)n + 1);
  e->len = (uint32_t)n;
  w->bytes += (size_t)n;
  if (at > w->max_at) w->max_at = at;
  w->chains[chain].n++;
  return w->nevents++;
}

static void person_json(gen_t *g, long idx, char *out, size_t cap) {
  char rid[19];
  bm_resident_id(g->p->person_block, idx, rid);
  /* Name and phone derive from the index too, so a person is the same at every scan. */
  rng_t pr = {g->p->seed ^ ((uint64_t)g->p->person_block << 40) ^ (uint64_t)idx * 0x2545F4914F6CDD1DULL};
  uint64_t h = rng_next(&pr);
  const char *sn = surnames[h % (sizeof surnames / sizeof surnames[0])];
  const char *gn = given[(h >> 8) % (sizeof given / sizeof given[0])];
  if ((h >> 16) & 1) {
    snprintf(out, cap, "{\"id_type\":\"resident_id\",\"id_number\":\"%s\",\"name\":\"%s%s\",\"phone\":\"1%d%09llu\"}",
             rid, sn, gn, 3 + (int)((h >> 17) % 7), (unsigned long long)((h >> 20) % 1000000000ULL));
  } else {
    snprintf(out, cap, "{\"id_type\":\"resident_id\",\"id_number\":\"%s\",\"name\":\"%s%s\"}", rid, sn, gn);
  }
}

typedef struct {
  char code[33];
  long person0;          /* its persons are person0 .. person0 + 9 */
  int positive;
  int seal_event;        /* follow-up tubes: the tube.seal event */
  int64_t sealed_at;
} tube_t;

/* The courier's and the lab's chains of a sealed box; returns the lab chain (or -1) and fills
 * result_event[k] with the index of the result of tubes[k]. */
static int box_journey(gen_t *g, int site, const char *box, int seal_event, int64_t sealed_at,
                       tube_t *tubes, int ntubes, const char *lab_code, int lab_sender,
                       int courier_sender, int *result_event, int single) {
  bm_workload_t *w = g->w;
  int cc = chain_open(g, courier_sender, 1);
  if (cc < 0) return -1;
  w->events[seal_event].then = cc;
  emit(g, cc, BM_BOX_PICKUP, sealed_at + 3 * 60000, "\"box\":\"%s\"", box);
  int deliver = emit(g, cc, BM_BOX_DELIVER, sealed_at + 15 * 60000, "\"box\":\"%s\",\"lab\":\"%s\"", box, lab_code);
  if (deliver < 0) return -1;
  int lc = chain_open(g, lab_sender, 1);
  if (lc < 0) return -1;
  w->events[deliver].then = lc;
  char list[50 * 36];
  size_t len = 0;
  for (int k = 0; k < ntubes; k++)
    len += (size_t)snprintf(list + len, sizeof list - len, "%s\"%s\"", k ? "," : "", tubes[k].code);
  emit(g, lc, BM_BOX_RECEIVE, sealed_at + 18 * 60000, "\"box\":\"%s\",\"tubes\":[%s]", box, list);
  for (int k = 0; k < ntubes; k++) {
    int64_t at = sealed_at + 20 * 60000 + k * 6000;
    if (tubes[k].positive)
      result_event[k] = emit(g, lc, BM_TUBE_RESULT, at,
                             "\"tube\":\"%s\",\"result\":\"positive\",\"ct\":{\"ORF1ab\":%d.%d,\"N\":%d.%d}",
                             tubes[k].code, 26 + (int)(rng_next(&g->rng) % 8), (int)(rng_next(&g->rng) % 10),
                             25 + (int)(rng_next(&g->rng) % 8), (int)(rng_next(&g->rng) % 10));
    else
      result_event[k] = emit(g, lc, BM_TUBE_RESULT, at, "\"tube\":\"%s\",\"result\":\"negative\"", tubes[k].code);
  }
  (void)site;
  (void)single;
  return g->fail ? -1 : lc;
}

int bm_workload_build(bm_workload_t *w, const bm_registry_t *r, const bm_params_t *p) {
  memset(w, 0, sizeof *w);
  int off = p->site_offset > 0 && p->site_offset < r->nsites ? p->site_offset : 0;
  int nsites = p->sites > 0 && p->sites < r->nsites - off ? p->sites : r->nsites - off;
  size_t taglen = p->tag ? strlen(p->tag) : 0;
  if (taglen < 1 || taglen > 6 || p->boxes_per_site < 1 || p->boxes_per_site > 999) {
    fprintf(stderr, "model: --tag must be 1-6 characters and --boxes 1-999\n");
    return -1;
  }
  /* A block past the last, or persons past a block's end, would be another block's persons
   * again: their samples go the slow way (a person sampled again) and the figures with them. */
  if (p->person_block < 0 || p->person_block >= NBLOCKS * BLOCK_SHIFTS || p->person_offset < 0 ||
      p->person_offset >= BLOCK_PERSONS) {
    fprintf(stderr, "model: --block must be 0-%d and --person-offset 0-%ld\n",
            NBLOCKS * BLOCK_SHIFTS - 1, BLOCK_PERSONS - 1);
    return -1;
  }
  for (size_t i = 0; i < taglen; i++) {
    char c = p->tag[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) {
      fprintf(stderr, "model: --tag must be letters and digits\n");
      return -1;
    }
  }
  gen_t g = {.w = w, .reg = r, .p = p};
  uint64_t th = 1469598103934665603ULL;
  for (size_t i = 0; i < taglen; i++) th = (th ^ (unsigned char)p->tag[i]) * 1099511628211ULL;
  g.rng.s = p->seed ^ th;
  long person = p->person_offset;
  const int tubes_per_box = 50, per_tube = 10;
  /* one site's chain: 12 events per tube, a pack per 10 tubes, a seal per box */
  const long site_events = (long)p->boxes_per_site * (tubes_per_box * (per_tube + 2) + tubes_per_box / 10 + 1);
  const double dt = 60.0 * 60000.0 / (double)site_events; /* the site's hour, evenly */
  tube_t *box_tubes = calloc(tubes_per_box, sizeof *box_tubes);
  int *results = calloc(tubes_per_box, sizeof *results);
  if (box_tubes == NULL || results == NULL) {
    free(box_tubes);
    free(results);
    return -1;
  }

  for (int si = off; si < off + nsites && !g.fail; si++) {
    const bm_sender_t *site = &r->senders[si];
    int township = atoi(site->region + 6) - 101;
    int courier = r->nsites + si % r->ncouriers;
    int lab = r->nsites + r->ncouriers + (township < 0 ? 0 : township) % r->nlabs;
    const char *lab_code = r->senders[lab].code;
    int64_t t0 = p->base_ms + (int64_t)(rng_unit(&g.rng) * 30000.0);
    long j = 0;
    /* follow-up tubes of this site, packed at the end */
    tube_t *fu = NULL;
    int nfu = 0, capfu = 0;
    long fu_seq = 0;

    int sc = chain_open(&g, si, 0);
    if (sc < 0) break;
    /* Lab journeys start after the whole site chain exists (chains stay contiguous), so the
     * site chain remembers its boxes first. */
    typedef struct {
      char code[33];
      int seal_event;
      int64_t sealed_at;
      tube_t tubes[50];
    } sbox_t;
    sbox_t *boxes = calloc((size_t)p->boxes_per_site, sizeof *boxes);
    if (boxes == NULL) {
      g.fail = 1;
      break;
    }
    for (int b = 0; b < p->boxes_per_site && !g.fail; b++) {
      sbox_t *bx = &boxes[b];
      snprintf(bx->code, sizeof bx->code, "%sB%04d%03d", p->tag, si + 1, b + 1);
      for (int t = 0; t < tubes_per_box && !g.fail; t++) {
        tube_t *tb = &bx->tubes[t];
        snprintf(tb->code, sizeof tb->code, "%sT%04d%05d", p->tag, si + 1, b * tubes_per_box + t + 1);
        tb->person0 = person;
        tb->positive = rng_unit(&g.rng) < p->positive_rate;
        emit(&g, sc, BM_TUBE_OPEN, t0 + (int64_t)(dt * (double)j++),
             "\"tube\":\"%s\",\"round\":\"%s\",\"capacity\":%d", tb->code, r->round, per_tube);
        for (int k = 0; k < per_tube; k++) {
          char pj[256];
          person_json(&g, person++, pj, sizeof pj);
          emit(&g, sc, BM_SAMPLE_ADD, t0 + (int64_t)(dt * (double)j++), "\"tube\":\"%s\",\"person\":%s",
               tb->code, pj);
        }
        emit(&g, sc, BM_TUBE_SEAL, t0 + (int64_t)(dt * (double)j++), "\"tube\":\"%s\",\"count\":%d",
             tb->code, per_tube);
        if (t % 10 == 9) {
          char list[10 * 36];
          size_t len = 0;
          for (int k = t - 9; k <= t; k++)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s\"%s\"", k > t - 9 ? "," : "",
                                    bx->tubes[k].code);
          emit(&g, sc, BM_BOX_PACK, t0 + (int64_t)(dt * (double)j++), "\"box\":\"%s\",\"tubes\":[%s]",
               bx->code, list);
        }
      }
      bx->sealed_at = t0 + (int64_t)(dt * (double)j++);
      bx->seal_event = emit(&g, sc, BM_BOX_SEAL, bx->sealed_at, "\"box\":\"%s\",\"lab\":\"%s\",\"count\":%d",
                            bx->code, lab_code, tubes_per_box);
      w->tubes += tubes_per_box;
      w->boxes++;
    }
    w->samples += (long)p->boxes_per_site * tubes_per_box * per_tube;
    if (p->site_only) {
      free(boxes);
      continue;
    }

    for (int b = 0; b < p->boxes_per_site && !g.fail; b++) {
      sbox_t *bx = &boxes[b];
      if (box_journey(&g, si, bx->code, bx->seal_event, bx->sealed_at, bx->tubes, tubes_per_box, lab_code,
                      lab, courier, results, 0) < 0)
        break;
      /* Each pooled positive calls its ten persons back for single tubes. */
      for (int t = 0; t < tubes_per_box && !g.fail; t++) {
        if (!bx->tubes[t].positive) continue;
        w->positives++;
        int fc = chain_open(&g, si, 1);
        if (fc < 0) break;
        w->events[results[t]].then = fc;
        int64_t at = w->events[results[t]].at + 2 * 60000;
        for (int k = 0; k < per_tube && !g.fail; k++) {
          if (grow((void **)&fu, &capfu, nfu, sizeof *fu) != 0) {
            g.fail = 1;
            break;
          }
          tube_t *ft = &fu[nfu++];
          memset(ft, 0, sizeof *ft);
          snprintf(ft->code, sizeof ft->code, "%sF%04d%05ld", p->tag, si + 1, ++fu_seq);
          ft->person0 = bx->tubes[t].person0 + k;
          ft->positive = k == 0; /* one person of the pool is the positive one */
          char pj[256];
          person_json(&g, ft->person0, pj, sizeof pj);
          emit(&g, fc, BM_TUBE_OPEN, at, "\"tube\":\"%s\",\"round\":\"%s\",\"capacity\":1", ft->code, r->round);
          emit(&g, fc, BM_SAMPLE_ADD, at + 5000, "\"tube\":\"%s\",\"person\":%s", ft->code, pj);
          ft->sealed_at = at + 10000;
          ft->seal_event = emit(&g, fc, BM_TUBE_SEAL, ft->sealed_at, "\"tube\":\"%s\",\"count\":1", ft->code);
          at += 20000;
          w->tubes++;
          w->samples++;
        }
      }
    }
    free(boxes);

    /* Follow-up boxes: up to 50 single tubes each, packed once all of them are sealed. */
    for (int f0 = 0, nb = 0; f0 < nfu && !g.fail; f0 += tubes_per_box, nb++) {
      int n = nfu - f0 < tubes_per_box ? nfu - f0 : tubes_per_box;
      char box[33];
      snprintf(box, sizeof box, "%sG%04d%03d", p->tag, si + 1, nb + 1);
      int gc = chain_open(&g, si, n);
      if (gc < 0) break;
      int64_t last = 0;
      for (int k = 0; k < n; k++) {
        w->events[fu[f0 + k].seal_event].then = gc;
        if (fu[f0 + k].sealed_at > last) last = fu[f0 + k].sealed_at;
      }
      for (int k0 = 0; k0 < n; k0 += 10) {
        char list[10 * 36];
        size_t len = 0;
        for (int k = k0; k < n && k < k0 + 10; k++)
          len += (size_t)snprintf(list + len, sizeof list - len, "%s\"%s\"", k > k0 ? "," : "", fu[f0 + k].code);
        emit(&g, gc, BM_BOX_PACK, last + 60000 + k0 * 100, "\"box\":\"%s\",\"tubes\":[%s]", box, list);
      }
      int64_t sealed_at = last + 90000;
      int seal = emit(&g, gc, BM_BOX_SEAL, sealed_at, "\"box\":\"%s\",\"lab\":\"%s\",\"count\":%d", box, lab_code, n);
      if (seal < 0) break;
      w->boxes++;
      if (box_journey(&g, si, box, seal, sealed_at, fu + f0, n, lab_code, lab, courier, results, 1) < 0) break;
    }
    free(fu);
  }
  free(box_tubes);
  free(results);
  w->persons = person - p->person_offset;
  if (g.fail) {
    fprintf(stderr, "model: out of memory building the workload\n");
    bm_workload_dispose(w);
    return -1;
  }
  if (person > BLOCK_PERSONS) {
    fprintf(stderr, "model: persons %ld to %ld run past the block's %ld: a lower --person-offset or "
            "another --block\n", p->person_offset, person - 1, BLOCK_PERSONS);
    bm_workload_dispose(w);
    return -1;
  }
  return 0;
}

void bm_workload_dispose(bm_workload_t *w) {
  for (int i = 0; i < w->nevents; i++) free(w->events[i].json);
  free(w->events);
  free(w->chains);
  memset(w, 0, sizeof *w);
}
