/* The offline journal and its sender (journal.h): the file format, crash-safe appends, and
 * the uploads over one kept-alive connection driven by curl's multi interface in the caller's
 * thread. Shared by scan, sync, courier and lab. */
#include "journal.h"

#include "crypto/token.h"
#include "domain/validate.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/rand.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HEADER "tubeloop-journal 1"
#define BACKOFF_FIRST_MS 500
#define BACKOFF_MAX_MS 30000

int64_t tl_jnow_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------- operator's words ---------- */

static const struct {
  const char *code, *zh, *en;
} code_texts[] = {
    {"tube_exists", "此采样管已开过管", "this tube was opened before"},
    {"tube_unknown", "采样管未开管", "no tube with this code was opened"},
    {"tube_sealed", "采样管已封管", "the tube is sealed"},
    {"tube_full", "满管", "the tube is full"},
    {"tube_empty", "空管不能封管", "an empty tube cannot be sealed"},
    {"already_in_tube", "此人已在本管中", "this person is already in this tube"},
    {"invalid_person", "受检者信息无效", "the person's data is not valid"},
    {"round_unknown", "没有这个轮次", "there is no such round"},
    {"round_closed", "轮次已结束", "the round is closed"},
    {"tube_not_sealed", "采样管未封管，不能装箱", "a tube must be sealed before it is packed"},
    {"tube_in_other_box", "采样管已装入其他转运箱", "the tube is packed in another box"},
    {"box_sealed", "转运箱已封箱", "the box is sealed"},
    {"box_empty", "空箱不能封箱", "an empty box cannot be sealed"},
    {"lab_unknown", "没有这个实验室", "there is no such lab"},
    {"out_of_scope", "不属于本单位", "it belongs to another site, courier or lab"},
    {"forbidden", "此令牌无权发送这类事件", "this token may not send this kind of event"},
    {"future_time", "设备时间超前，请校准时钟", "the device clock is ahead: set the time"},
    {"invalid_time", "时间无效", "the time is not valid"},
    {"id_conflict", "事件编号冲突", "another event had this id"},
    {"result_conflict", "与已有结果矛盾", "it contradicts the recorded result"},
    {"invalid_barcode", "条码无效", "not a valid barcode"},
    {"invalid_code", "编码无效", "not a valid code"},
    {"invalid_capacity", "容量无效", "not a valid capacity"},
    {"invalid_reason", "原因无效", "not a valid reason"},
    {"internal", "服务器内部错误", "the server failed"},
};

const char *tl_journal_code_text(const tl_cli_t *c, const char *code) {
  for (size_t i = 0; i < sizeof code_texts / sizeof code_texts[0]; i++)
    if (strcmp(code_texts[i].code, code) == 0) return TL_MSG(c, code_texts[i].zh, code_texts[i].en);
  return code;
}

const char *tl_journal_outcome(const tl_cli_t *c, const tl_jentry_t *e, char *buf, size_t buflen) {
  switch (e->state) {
  case TL_JE_UNSENT:
  case TL_JE_INFLIGHT: snprintf(buf, buflen, "%s", TL_MSG(c, "待发送", "waiting")); break;
  case TL_JE_ACCEPTED: snprintf(buf, buflen, "%s", TL_MSG(c, "已接收", "accepted")); break;
  case TL_JE_DUPLICATE:
    snprintf(buf, buflen, "%s", TL_MSG(c, "已接收（重发）", "accepted (resent)"));
    break;
  case TL_JE_REJECTED:
    snprintf(buf, buflen, "%s: %s (%s)", TL_MSG(c, "拒绝", "refused"), tl_journal_code_text(c, e->code),
             e->code);
    break;
  case TL_JE_UNDONE: snprintf(buf, buflen, "%s", TL_MSG(c, "已撤销", "taken back")); break;
  }
  return buf;
}

const char *tl_journal_subject(const tl_jentry_t *e, char *buf, size_t buflen) {
  cJSON *o = cJSON_Parse(e->json);
  const char *v = tl_js(o, "tube");
  snprintf(buf, buflen, "%s", v[0] ? v : tl_js(o, "box"));
  cJSON_Delete(o);
  return buf;
}

/* ---------- records ---------- */

static uint32_t fnv1a(const char *p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)p[i];
    h *= 16777619u;
  }
  return h;
}

/* Appends one record: the content from fmt, " #", its check, newline. */
static int add_record(tl_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int add_record(tl_buf_t *b, const char *fmt, ...) {
  size_t start = b->len;
  va_list ap;
  va_start(ap, fmt);
  int rc = tl_buf_vappendf(b, fmt, ap);
  va_end(ap);
  if (rc == 0) rc = tl_buf_appendf(b, " #%08x\n", fnv1a(b->data + start, b->len - start));
  if (rc != 0) b->len = start;
  return rc;
}

/* Writes whole records and makes them durable; on any failure the file is cut back to its
 * last complete record, so a later append never follows half a line. */
static int write_records(tl_journal_t *j, const tl_buf_t *b) {
  size_t done = 0;
  while (done < b->len) {
    ssize_t k = write(j->fd, b->data + done, b->len - done);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) goto fail;
    done += (size_t)k;
  }
  if (fsync(j->fd) != 0) goto fail;
  j->size += (off_t)b->len;
  return 0;
fail:
  if (ftruncate(j->fd, j->size) != 0) { /* nothing more to do: the open cuts a torn tail */
  }
  return TL_EIO;
}

static int grow_entries(tl_journal_t *j) {
  if (j->n < j->cap) return 0;
  int cap = j->cap ? j->cap * 2 : 64;
  tl_jentry_t *p = realloc(j->entries, (size_t)cap * sizeof *p);
  if (p == NULL) return TL_ENOMEM;
  j->entries = p;
  j->cap = cap;
  return 0;
}

/* Finds an entry by id, looking near the last hit first: answers follow their events. */
static tl_jentry_t *find_entry(tl_journal_t *j, const char *id, int *hint) {
  for (int k = 0; k < j->n; k++) {
    int i = (*hint + k) % j->n;
    if (strcmp(j->entries[i].id, id) == 0) {
      *hint = i;
      return &j->entries[i];
    }
  }
  return NULL;
}

static int state_parse(const char *s, tl_jstate_t *out) {
  if (strcmp(s, "accepted") == 0) *out = TL_JE_ACCEPTED;
  else if (strcmp(s, "duplicate") == 0) *out = TL_JE_DUPLICATE;
  else if (strcmp(s, "rejected") == 0) *out = TL_JE_REJECTED;
  else return -1;
  return 0;
}

static int add_cap(tl_journal_t *j, const char *round, int capacity) {
  for (int i = 0; i < j->ncaps; i++)
    if (strcmp(j->caps[i].round, round) == 0) {
      j->caps[i].capacity = capacity;
      return 0;
    }
  if (j->ncaps == j->capcaps) {
    int cap = j->capcaps ? j->capcaps * 2 : 8;
    tl_jcap_t *p = realloc(j->caps, (size_t)cap * sizeof *p);
    if (p == NULL) return TL_ENOMEM;
    j->caps = p;
    j->capcaps = cap;
  }
  snprintf(j->caps[j->ncaps].round, sizeof j->caps[0].round, "%s", round);
  j->caps[j->ncaps++].capacity = capacity;
  return 0;
}

/* Adds an entry for event text json (len bytes). -1 when it is not an event. Ids are fresh
 * UUIDs, so no search for a repeated one (that would make opening quadratic). */
static int add_entry(tl_journal_t *j, const char *json, size_t len) {
  cJSON *o = cJSON_ParseWithLength(json, len);
  const char *id = tl_js(o, "id"), *type = tl_js(o, "type");
  int rc = -1;
  if (o && tl_valid_uuid(id, strlen(id)) && type[0] && strlen(type) < sizeof j->entries[0].type) {
    char lower[37];
    tl_uuid_lower(lower, id);
    if (grow_entries(j) == 0) {
      tl_jentry_t *e = &j->entries[j->n];
      memset(e, 0, sizeof *e);
      memcpy(e->id, lower, sizeof e->id);
      snprintf(e->type, sizeof e->type, "%s", type);
      if ((e->json = strndup(json, len)) != NULL) {
        j->n++;
        rc = 0;
      }
    }
  }
  cJSON_Delete(o);
  return rc;
}

/* One complete line of the file (without its newline). -1 when damaged or unknown. */
static int load_line(tl_journal_t *j, char *line, size_t len, int *hint) {
  /* the check is the last " #xxxxxxxx" */
  if (len < 10 || line[len - 10] != ' ' || line[len - 9] != '#') return -1;
  char *end;
  unsigned long want = strtoul(line + len - 8, &end, 16);
  if (end != line + len || fnv1a(line, len - 10) != (uint32_t)want) return -1;
  len -= 10;
  line[len] = '\0';
  if (strncmp(line, "event ", 6) == 0) return add_entry(j, line + 6, len - 6);
  char a[64], b[64], cc[64];
  if (sscanf(line, "ack %36s %15s %39s", a, b, cc) == 3) {
    tl_jstate_t st;
    tl_jentry_t *e = find_entry(j, a, hint);
    if (e == NULL || state_parse(b, &st) != 0) return -1;
    e->state = st;
    snprintf(e->code, sizeof e->code, "%.39s", strcmp(cc, "-") == 0 ? "" : cc);
    return 0;
  }
  if (sscanf(line, "undo %36s", a) == 1) {
    tl_jentry_t *e = find_entry(j, a, hint);
    if (e == NULL) return -1;
    if (e->state == TL_JE_UNSENT) e->state = TL_JE_UNDONE;
    return 0;
  }
  int n;
  if (sscanf(line, "capacity %32s %d", a, &n) == 2) return add_cap(j, a, n) == 0 ? 0 : -1;
  return -1;
}

static void count_waiting(tl_journal_t *j) {
  j->waiting = 0;
  for (int i = 0; i < j->n; i++)
    j->waiting += j->entries[i].state == TL_JE_UNSENT || j->entries[i].state == TL_JE_INFLIGHT;
}

/* Reads the whole file and replays it. A torn last line is cut off here. */
static int load(tl_journal_t *j, const tl_cli_t *c, char *err, size_t errlen) {
  struct stat st;
  if (fstat(j->fd, &st) != 0) goto io;
  size_t len = (size_t)st.st_size;
  char *data = malloc(len + 1);
  if (data == NULL) return TL_ENOMEM;
  size_t got = 0;
  while (got < len) {
    ssize_t k = pread(j->fd, data + got, len - got, (off_t)got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    got += (size_t)k;
  }
  len = got;
  char *nl = memchr(data, '\n', len);
  size_t hlen = strlen(HEADER);
  if (nl == NULL && len <= hlen && memcmp(data, HEADER, len) == 0) {
    /* empty, or even the header line was torn: start over */
    free(data);
    if (ftruncate(j->fd, 0) != 0) goto io;
    j->size = 0;
    tl_buf_t b;
    tl_buf_init(&b);
    int rc = tl_buf_appendf(&b, "%s\n", HEADER);
    if (rc == 0) rc = write_records(j, &b);
    tl_buf_dispose(&b);
    if (rc != 0) goto io;
    return 0;
  }
  if (nl == NULL || (size_t)(nl - data) != hlen || memcmp(data, HEADER, hlen) != 0) {
    free(data);
    snprintf(err, errlen, "%s: %s", j->path, TL_MSG(c, "不是 tubeloop 离线日志", "not a tubeloop journal"));
    return TL_EINVAL;
  }
  size_t pos = hlen + 1;
  int hint = 0;
  while (pos < len) {
    char *end = memchr(data + pos, '\n', len - pos);
    if (end == NULL) break; /* torn: cut below */
    size_t l = (size_t)(end - (data + pos));
    if (load_line(j, data + pos, l, &hint) != 0) j->skipped++;
    pos += l + 1;
  }
  free(data);
  j->size = (off_t)pos;
  if (pos < (size_t)st.st_size && ftruncate(j->fd, j->size) != 0) goto io;
  count_waiting(j);
  return 0;
io:
  snprintf(err, errlen, "%s: %s", j->path, strerror(errno));
  return TL_EIO;
}

static void fsync_dir(const char *path) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == NULL) snprintf(dir, sizeof dir, ".");
  else if (slash == dir) dir[1] = '\0';
  else *slash = '\0';
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)fsync(fd); /* best effort: the entry of a new journal survives a power cut */
    close(fd);
  }
}

int tl_journal_open(tl_journal_t *j, const tl_cli_t *c, const char *path, int create, char *err,
                    size_t errlen) {
  memset(j, 0, sizeof *j);
  j->fd = -1;
  int rc = TL_ENOMEM;
  if ((j->path = strdup(path)) == NULL) goto fail;
  struct stat st;
  int existed = stat(path, &st) == 0;
  j->fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
  if (j->fd < 0) {
    snprintf(err, errlen, "%s %s: %s", TL_MSG(c, "无法打开离线日志", "cannot open the journal"), path,
             strerror(errno));
    rc = TL_EIO;
    goto fail;
  }
  if (flock(j->fd, LOCK_EX | LOCK_NB) != 0) {
    snprintf(err, errlen, "%s: %s", path,
             TL_MSG(c, "离线日志正被另一个 tubeloop 进程使用（它会自行上传）",
                    "the journal is in use by another tubeloop process (which uploads it itself)"));
    rc = errno == EWOULDBLOCK ? TL_EBUSY : TL_EIO;
    goto fail;
  }
  if ((rc = load(j, c, err, errlen)) != 0) goto fail;
  if (!existed) fsync_dir(path);
  return 0;
fail:
  tl_journal_close(j);
  return rc;
}

void tl_journal_close(tl_journal_t *j) {
  if (j->fd >= 0) close(j->fd); /* also drops the lock */
  for (int i = 0; i < j->n; i++) free(j->entries[i].json);
  free(j->entries);
  free(j->caps);
  free(j->path);
  memset(j, 0, sizeof *j);
  j->fd = -1;
}

/* A UUID version 7 (RFC 9562): the Unix time in milliseconds when the event was made in the
 * first 48 bits, then 74 random bits. Ids made one after another sort by time, so the server's
 * event-id indexes grow at their right edge, where their pages are in memory, instead of taking
 * a random page for every event (docs/PERFORMANCE.md, tenth update). */
static int make_uuid(int64_t ms, char out[37]) {
  unsigned char r[16];
  if (RAND_bytes(r + 6, 10) != 1) return TL_EIO;
  for (int i = 0; i < 6; i++) r[i] = (unsigned char)((uint64_t)ms >> (8 * (5 - i)));
  tl_uuid_format(r, 7, out);
  return 0;
}

cJSON *tl_journal_event_new(const char *type) {
  char id[37], at[TL_TIME_TEXT_MAX];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  time_t secs = ts.tv_sec;
  localtime_r(&secs, &tm);
  int64_t ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  if (make_uuid(ms, id) != 0 || tl_time_format(ms, (int)(tm.tm_gmtoff / 60), at) != 0) return NULL;
  cJSON *o = cJSON_CreateObject();
  if (o == NULL || cJSON_AddStringToObject(o, "id", id) == NULL ||
      cJSON_AddStringToObject(o, "type", type) == NULL || cJSON_AddStringToObject(o, "at", at) == NULL) {
    cJSON_Delete(o);
    return NULL;
  }
  return o;
}

int tl_journal_append(tl_journal_t *j, const cJSON *event, int *index) {
  if (grow_entries(j) != 0) return TL_ENOMEM;
  char *json = cJSON_PrintUnformatted(event);
  if (json == NULL) return TL_ENOMEM;
  tl_buf_t b;
  tl_buf_init(&b);
  int rc = add_record(&b, "event %s", json);
  if (rc == 0) rc = write_records(j, &b);
  tl_buf_dispose(&b);
  if (rc == 0 && add_entry(j, json, strlen(json)) != 0) rc = TL_EINVAL; /* a caller's bug */
  free(json);
  if (rc != 0) return rc;
  j->entries[j->n - 1].added_ms = tl_jnow_ms();
  j->waiting++;
  if (index) *index = j->n - 1;
  return 0;
}

int tl_journal_undo(tl_journal_t *j, int index) {
  tl_jentry_t *e = &j->entries[index];
  if (e->state != TL_JE_UNSENT) return TL_EBUSY;
  tl_buf_t b;
  tl_buf_init(&b);
  int rc = add_record(&b, "undo %s", e->id);
  if (rc == 0) rc = write_records(j, &b);
  tl_buf_dispose(&b);
  if (rc == 0) {
    e->state = TL_JE_UNDONE;
    j->waiting--;
  }
  return rc;
}

int tl_journal_set_capacity(tl_journal_t *j, const char *round, int capacity) {
  tl_buf_t b;
  tl_buf_init(&b);
  int rc = add_record(&b, "capacity %s %d", round, capacity);
  if (rc == 0) rc = write_records(j, &b);
  tl_buf_dispose(&b);
  return rc == 0 ? add_cap(j, round, capacity) : rc;
}

int tl_journal_capacity(const tl_journal_t *j, const char *round) {
  for (int i = 0; i < j->ncaps; i++)
    if (strcmp(j->caps[i].round, round) == 0) return j->caps[i].capacity;
  return 0;
}

int tl_journal_default_path(const char *url, const char *token, char *out, size_t outlen) {
  char base[PATH_MAX];
  const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
  if (xdg && xdg[0] == '/') snprintf(base, sizeof base, "%s/tubeloop", xdg);
  else if (home && home[0] == '/') snprintf(base, sizeof base, "%s/.local/state/tubeloop", home);
  else return TL_EIO;
  /* mkdir -p, the last levels private: the journal holds personal data */
  for (char *p = base + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(base, 0700) != 0 && errno != EEXIST) return TL_EIO;
    *p = '/';
  }
  if (mkdir(base, 0700) != 0 && errno != EEXIST) return TL_EIO;
  tl_buf_t b;
  tl_buf_init(&b);
  char hash[TL_TOKEN_HASH_LEN + 1];
  if (tl_buf_appendf(&b, "%s\n%s", url ? url : "", token ? token : "") != 0) {
    tl_buf_dispose(&b);
    return TL_ENOMEM;
  }
  tl_token_hash(b.data, b.len, hash); /* a SHA-256: names the identity, reveals nothing of it */
  tl_buf_dispose(&b);
  int n = snprintf(out, outlen, "%s/journal-%.16s.log", base, hash);
  return n > 0 && (size_t)n < outlen ? 0 : TL_EINVAL;
}

/* ---------- the sender ---------- */

static size_t on_answer(char *ptr, size_t size, size_t n, void *arg) {
  tl_buf_t *b = arg;
  return tl_buf_append(b, ptr, size * n) == 0 ? size * n : 0;
}

int tl_jsend_init(tl_jsend_t *s, tl_cli_t *c, tl_journal_t *j) {
  memset(s, 0, sizeof *s);
  s->cli = c;
  s->j = j;
  s->online = -1;
  s->batch_max = TL_JOURNAL_BATCH;
  tl_buf_init(&s->body);
  tl_buf_init(&s->answer);
  char auth[512];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token ? c->token : "");
  struct curl_slist *h = curl_slist_append(NULL, auth);
  struct curl_slist *h2 = h ? curl_slist_append(h, "Content-Type: application/json") : NULL;
  /* never "Expect: 100-continue": the daemon does not answer 100, so a request carrying it
   * waits out curl's 1 s expect timeout (curl adds it on its own only above 1 MiB today) */
  struct curl_slist *h3 = h2 ? curl_slist_append(h2, "Expect:") : NULL;
  s->hdrs = h3 ? h3 : h2 ? h2 : h;
  s->multi = curl_multi_init();
  s->easy = curl_easy_init();
  if (h3 == NULL || s->multi == NULL || s->easy == NULL) {
    tl_jsend_dispose(s);
    return TL_ENOMEM;
  }
  return 0;
}

void tl_jsend_dispose(tl_jsend_t *s) {
  if (s->multi && s->easy && s->busy) curl_multi_remove_handle(s->multi, s->easy);
  /* a request abandoned here may still have been applied: its events are resent next time
   * with the same ids and answered "duplicate" */
  for (int i = 0; s->busy == TL_JSEND_POSTING && i < s->nbatch; i++)
    if (s->j->entries[s->batch[i]].state == TL_JE_INFLIGHT) s->j->entries[s->batch[i]].state = TL_JE_UNSENT;
  if (s->easy) curl_easy_cleanup(s->easy);
  if (s->multi) curl_multi_cleanup(s->multi);
  curl_slist_free_all(s->hdrs);
  tl_buf_dispose(&s->body);
  tl_buf_dispose(&s->answer);
  memset(s, 0, sizeof *s);
}

int tl_jsend_get(tl_jsend_t *s, const char *path, tl_jsend_get_cb cb, void *ud) {
  if (s->get_path[0] || strlen(path) >= sizeof s->get_path) return TL_EBUSY;
  snprintf(s->get_path, sizeof s->get_path, "%s", path);
  s->on_get = cb;
  s->get_ud = ud;
  return 0;
}

/* The first entry that is due to be sent, or -1. *wait_ms: how long until one is. */
static int first_sendable(tl_jsend_t *s, int64_t now, int64_t *wait_ms) {
  tl_journal_t *j = s->j;
  while (s->from < j->n && j->entries[s->from].state != TL_JE_UNSENT &&
         j->entries[s->from].state != TL_JE_INFLIGHT)
    s->from++;
  *wait_ms = -1;
  for (int i = s->from; i < j->n; i++) {
    const tl_jentry_t *e = &j->entries[i];
    if (e->state != TL_JE_UNSENT) continue;
    int64_t ready = e->added_ms ? e->added_ms + s->hold_ms : 0;
    if (ready > now) {
      *wait_ms = ready - now;
      return -1;
    }
    return i;
  }
  return -1;
}

static void start(tl_jsend_t *s, const char *method, const char *path) {
  tl_cli_t *c = s->cli;
  CURL *h = s->easy;
  char url[2048];
  snprintf(url, sizeof url, "%s%s", c->url ? c->url : "", path);
  tl_buf_reset(&s->answer);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, (struct curl_slist *)s->hdrs);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_answer);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &s->answer);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
  tl_cli_tls_setopt(c, h);
  if (strcmp(method, "POST") == 0) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, s->body.data);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)s->body.len);
  } else {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  }
  curl_multi_add_handle(s->multi, h);
}

/* Starts the next request if one is due and none is on its way. */
static void maybe_start(tl_jsend_t *s) {
  if (s->busy || s->fatal || tl_jnow_ms() < s->next_try_ms) return;
  if (s->get_path[0]) {
    s->busy = TL_JSEND_GETTING;
    start(s, "GET", s->get_path);
    return;
  }
  int64_t wait;
  int i = first_sendable(s, tl_jnow_ms(), &wait);
  if (i < 0) return;
  tl_journal_t *j = s->j;
  tl_buf_reset(&s->body);
  int rc = tl_buf_appendf(&s->body, "{\"events\":[");
  s->nbatch = 0;
  for (; i < j->n && s->nbatch < s->batch_max && rc == 0; i++) {
    tl_jentry_t *e = &j->entries[i];
    if (e->state != TL_JE_UNSENT) continue;
    if (e->added_ms && e->added_ms + s->hold_ms > tl_jnow_ms()) break; /* keep the order */
    rc = tl_buf_appendf(&s->body, "%s%s", s->nbatch ? "," : "", e->json);
    s->batch[s->nbatch++] = i;
  }
  if (rc == 0) rc = tl_buf_appendf(&s->body, "]}");
  if (rc != 0) return; /* out of memory: tried again on the next turn */
  tl_buf_cstr(&s->body);
  for (int k = 0; k < s->nbatch; k++) j->entries[s->batch[k]].state = TL_JE_INFLIGHT;
  s->busy = TL_JSEND_POSTING;
  start(s, "POST", "/v1/events");
}

static void set_link(tl_jsend_t *s, int online) {
  int changed = s->online != online;
  s->online = online;
  if (changed && s->on_link) s->on_link(s->ud, online, s->error);
}

/* The request failed: its events wait again, and the next try backs off (with jitter, so
 * many devices coming back at once do not knock together). */
static void failed(tl_jsend_t *s, int fatal, const char *why) {
  for (int k = 0; k < s->nbatch; k++)
    if (s->j->entries[s->batch[k]].state == TL_JE_INFLIGHT) s->j->entries[s->batch[k]].state = TL_JE_UNSENT;
  s->nbatch = 0;
  snprintf(s->error, sizeof s->error, "%s", why);
  s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : BACKOFF_FIRST_MS;
  if (s->backoff_ms > BACKOFF_MAX_MS) s->backoff_ms = BACKOFF_MAX_MS;
  unsigned char r = 0;
  (void)RAND_bytes(&r, 1);
  s->next_try_ms = tl_jnow_ms() + s->backoff_ms * (80 + r % 41) / 100;
  s->fatal = fatal;
  set_link(s, 0);
}

/* Records the answers of a 200 to the POST. -1 when the answer is not one. */
static int record_answers(tl_jsend_t *s) {
  tl_journal_t *j = s->j;
  cJSON *root = cJSON_ParseWithLength(s->answer.data, s->answer.len);
  const cJSON *results = root ? cJSON_GetObjectItemCaseSensitive(root, "results") : NULL;
  if (!cJSON_IsArray(results)) {
    cJSON_Delete(root);
    return -1;
  }
  tl_buf_t b;
  tl_buf_init(&b);
  int answered[TL_JOURNAL_BATCH] = {0};
  tl_jstate_t states[TL_JOURNAL_BATCH];
  char codes[TL_JOURNAL_BATCH][40];
  int k = 0;
  const cJSON *r;
  cJSON_ArrayForEach(r, results) {
    const char *id = tl_js(r, "id"), *code = tl_js(r, "code");
    tl_jstate_t st;
    if (state_parse(tl_js(r, "status"), &st) != 0) continue;
    /* answers come in order; look the id up in case they ever do not */
    int at = -1;
    if (k < s->nbatch && strcmp(j->entries[s->batch[k]].id, id) == 0) at = k;
    for (int m = 0; at < 0 && m < s->nbatch; m++)
      if (strcmp(j->entries[s->batch[m]].id, id) == 0) at = m;
    k++;
    if (at < 0 || answered[at]) continue;
    answered[at] = 1;
    states[at] = st;
    snprintf(codes[at], sizeof codes[at], "%s", st == TL_JE_REJECTED && code[0] ? code : "");
    for (char *p = codes[at]; *p; p++)
      if (*p == ' ' || *p == '#') *p = '_';
    if (add_record(&b, "ack %s %s %s", id, tl_js(r, "status"), codes[at][0] ? codes[at] : "-") != 0)
      answered[at] = 0;
  }
  cJSON_Delete(root);
  /* An answer that did not reach the disk is asked for again after a restart: the resend is
   * answered "duplicate" (or judged again if it was refused), so the state stays right. */
  if (b.len) (void)write_records(j, &b);
  tl_buf_dispose(&b);
  int nbatch = s->nbatch;
  int batch[TL_JOURNAL_BATCH];
  memcpy(batch, s->batch, sizeof batch);
  s->nbatch = 0;
  for (int m = 0; m < nbatch; m++) {
    tl_jentry_t *e = &j->entries[batch[m]];
    if (!answered[m]) {
      if (e->state == TL_JE_INFLIGHT) e->state = TL_JE_UNSENT;
      continue;
    }
    e->state = states[m];
    snprintf(e->code, sizeof e->code, "%.*s", (int)sizeof e->code - 1, codes[m]);
    j->waiting--;
    s->accepted += states[m] == TL_JE_ACCEPTED;
    s->duplicate += states[m] == TL_JE_DUPLICATE;
    s->rejected += states[m] == TL_JE_REJECTED;
  }
  for (int m = 0; m < nbatch; m++)
    if (answered[m] && s->on_ack) s->on_ack(s->ud, batch[m]);
  return 0;
}

static void finished(tl_jsend_t *s, CURLcode rc) {
  long status = 0;
  curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_multi_remove_handle(s->multi, s->easy);
  tl_jsend_busy_t busy = s->busy;
  s->busy = TL_JSEND_IDLE;
  const tl_cli_t *c = s->cli;
  if (busy == TL_JSEND_GETTING) {
    tl_jsend_get_cb cb = s->on_get;
    void *ud = s->get_ud;
    s->get_path[0] = '\0';
    cJSON *json = rc == CURLE_OK ? cJSON_ParseWithLength(s->answer.data, s->answer.len) : NULL;
    if (cb) cb(ud, rc == CURLE_OK ? status : 0, json);
    cJSON_Delete(json);
    return;
  }
  char why[300];
  if (rc != CURLE_OK) {
    snprintf(why, sizeof why, "%s (%s)", TL_MSG(c, "无法连接服务器", "cannot reach the server"),
             curl_easy_strerror(rc));
    failed(s, 0, why);
    return;
  }
  if (status == 200) {
    if (record_answers(s) != 0) {
      failed(s, 0, TL_MSG(c, "服务器的回答无法识别", "the server's answer is not understood"));
      return;
    }
    s->backoff_ms = 0;
    s->next_try_ms = 0;
    s->error[0] = '\0';
    set_link(s, 1);
    return;
  }
  tl_cli_resp_t r = {.status = status, .body = s->answer};
  tl_cli_resp_error(&r, why, sizeof why);
  /* 408, 429 and 5xx pass; anything else (a bad token, a refused body) will not pass by
   * trying again: the sender stops and says why */
  int transient = status == 408 || status == 429 || status >= 500;
  failed(s, !transient, why);
}

int tl_jsend_step(tl_jsend_t *s, int fd, int max_wait_ms) {
  maybe_start(s);
  int64_t wait = max_wait_ms, now = tl_jnow_ms();
  if (!s->busy && !s->fatal) {
    int64_t due = -1;
    if (s->get_path[0] || first_sendable(s, now, &due) >= 0) due = 0;
    if (due >= 0 && s->next_try_ms > now && s->next_try_ms - now > due) due = s->next_try_ms - now;
    if (due >= 0 && due < wait) wait = due;
  }
  if (wait < 0) wait = 0;
  struct curl_waitfd w = {.fd = fd, .events = CURL_WAIT_POLLIN, .revents = 0};
  curl_multi_poll(s->multi, fd >= 0 ? &w : NULL, fd >= 0 ? 1u : 0u, (int)wait, NULL);
  int running = 0;
  curl_multi_perform(s->multi, &running);
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(s->multi, &left)) != NULL)
    if (m->msg == CURLMSG_DONE && m->easy_handle == s->easy) finished(s, m->data.result);
  maybe_start(s);
  if (fd < 0) return 0;
  /* curl reports only POLLIN for extra descriptors; a pipe at its end says POLLHUP */
  struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)) ? 1 : 0;
}

int tl_jsend_flush(tl_jsend_t *s, int timeout_ms) {
  int64_t hold = s->hold_ms, deadline = tl_jnow_ms() + timeout_ms;
  s->hold_ms = 0;
  for (;;) {
    int64_t now = tl_jnow_ms();
    if ((s->j->waiting == 0 && !s->get_path[0] && !s->busy) || s->fatal || now >= deadline) break;
    int64_t left = deadline - now;
    tl_jsend_step(s, -1, (int)(left < 500 ? left : 500));
  }
  s->hold_ms = hold;
  return s->j->waiting;
}

int tl_jsend_read_lines(tl_jsend_t *s, int (*line_cb)(void *ud, char *line), void (*idle_cb)(void *ud),
                        void *ud) {
  tl_buf_t in;
  tl_buf_init(&in);
  int eof = 0, stop = 0;
  while (!eof && !stop) {
    if (idle_cb) idle_cb(ud);
    if (!tl_jsend_step(s, 0, 1000)) continue;
    char chunk[4096];
    ssize_t k = read(0, chunk, sizeof chunk);
    if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (k <= 0) eof = 1;
    else if (tl_buf_append(&in, chunk, (size_t)k) != 0) eof = 1;
    size_t pos = 0;
    while (!stop) {
      char *nl = in.len > pos ? memchr(in.data + pos, '\n', in.len - pos) : NULL;
      if (nl == NULL && !(eof && pos < in.len)) break;
      size_t end = nl ? (size_t)(nl - in.data) : in.len;
      char *line = in.data + pos;
      size_t len = end - pos;
      pos = nl ? end + 1 : in.len;
      while (len > 0 && strchr(" \t\r\f\v", line[len - 1])) len--;
      while (len > 0 && strchr(" \t\r\f\v", line[0])) {
        line++;
        len--;
      }
      char *copy = strndup(line, len);
      if (copy == NULL) {
        eof = 1;
        break;
      }
      stop = line_cb(ud, copy) != 0;
      free(copy);
    }
    tl_buf_consume(&in, pos);
  }
  tl_buf_dispose(&in);
  return stop;
}

/* ---------- shared by the field commands ---------- */

const char *tl_jarg(int *i, int argc, char **argv, const char *name) {
  size_t n = strlen(name);
  if (strncmp(argv[*i], name, n) == 0 && argv[*i][n] == '=') return argv[*i] + n + 1;
  if (strcmp(argv[*i], name) == 0 && *i + 1 < argc) return argv[++*i];
  return NULL;
}

int tl_jopts_parse(tl_jopts_t *o, int *i, int argc, char **argv) {
  const char *v;
  if ((v = tl_jarg(i, argc, argv, "--journal")) != NULL) {
    o->journal = v;
    return 1;
  }
  if ((v = tl_jarg(i, argc, argv, "--wait")) != NULL) {
    char *end;
    long w = strtol(v, &end, 10);
    if (*end || w < 0 || w > 86400) {
      tl_cli_fail("--wait: %s", v);
      return -1;
    }
    o->wait_s = (int)w;
    return 1;
  }
  return 0;
}

int tl_jsession_open(tl_cli_t *c, const tl_jopts_t *o, int create, tl_journal_t *j, tl_jsend_t *s) {
  if (tl_cli_need_server(c) != 0) return 1;
  /* CURLOPT_NOSIGNAL keeps libcurl from ignoring SIGPIPE for us, and a kept-alive connection
   * the server closed, or a closed stdout, must be an error to handle, not the end */
  signal(SIGPIPE, SIG_IGN);
  char path[PATH_MAX], err[PATH_MAX + 200];
  if (o->journal) {
    snprintf(path, sizeof path, "%s", o->journal);
  } else if (tl_journal_default_path(c->url, c->token, path, sizeof path) != 0) {
    return tl_cli_fail("%s", TL_MSG(c, "找不到存放离线日志的目录：请设置 HOME 或 XDG_STATE_HOME，或使用 --journal",
                                   "no folder for the journal: set HOME or XDG_STATE_HOME, or pass --journal"));
  }
  if (!create && access(path, F_OK) != 0) return -1;
  if (tl_journal_open(j, c, path, create, err, sizeof err) != 0) return tl_cli_fail("%s", err);
  if (tl_jsend_init(s, c, j) != 0) {
    tl_journal_close(j);
    return tl_cli_fail("out of memory");
  }
  if (j->skipped)
    fprintf(stderr, "tubeloop: %s: %d\n",
            TL_MSG(c, "离线日志中损坏的行已忽略", "damaged journal lines ignored"), j->skipped);
  return 0;
}

void tl_jsession_close(tl_journal_t *j, tl_jsend_t *s) {
  tl_jsend_dispose(s);
  tl_journal_close(j);
}
