/* tubeloop scan and tubeloop sync: the sampling point's scanner loop and the upload of what
 * the journal holds (journal.h).
 *
 * A scanner types one code per line and presses Enter. A tube barcode opens a tube
 * (tube.open); ID numbers and health-code texts add persons (sample.add); at the tube's
 * capacity the operator is told to switch tubes and the tube is sealed (tube.seal);
 * short commands (/seal, /box, /pack, /sealbox, /undo, /status, /quit) do the rest. Every
 * scan is checked here first, with the same rules the server applies (lib/domain: GB 11643
 * check digit, and tl_custody_apply on a local world rebuilt from the journal: tube full, the
 * same person twice in a tube, sealed tubes, boxes), then recorded in the journal before OK
 * is shown; the sender uploads in the background and refusals are reported when they come. */
#include "journal.h"

#include "crypto/token.h"
#include "domain/custody.h"
#include "domain/mask.h"
#include "domain/validate.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_CAPACITY 10 /* the usual 10-in-1, until the server tells the round's */
#define DEFAULT_WAIT_S 10
#define DEFAULT_HOLD_S 2
#define LOCAL_REGION "0" /* the local world's stand-in region: rounds there cover the site */

typedef struct {
  tl_cli_t *c;
  tl_journal_t j;
  tl_jsend_t s;
  tl_world_t w;         /* what this journal's own events built: the local rules' view */
  tl_sender_t me;       /* the sampling point, as the local rules see it */
  char round[TL_CODE_MAX + 1];
  int capacity;         /* --capacity; 0: the round's pool size */
  char tube[TL_CODE_MAX + 1]; /* the tube being filled, "" none */
  char box[TL_CODE_MAX + 1];  /* the box being packed, "" none */
  char probe_round[TL_CODE_MAX + 1]; /* the round whose pool size is being asked */
  int tty;              /* standard input is a terminal: show a prompt */
  int prompt_shown;     /* a prompt waits on the screen without a newline */
  int stale;            /* the journal changed under the local world: rebuild */
  int check_full;       /* a pool size was learned: the current tube may be full now */
  int said_offline;     /* the operator was told the server is out of reach */
  int tell_drained;     /* back online after that: say when everything is sent */
  long recorded, refused_by_server;
} scan_t;

/* ---------- output ---------- */

static const char *waiting_text(const scan_t *sc, char *buf, size_t n) {
  snprintf(buf, n, sc->c->en ? "%d waiting" : "待发送 %d", sc->j.waiting);
  return buf;
}

/* Moves off a prompt line before printing something that did not follow an Enter. */
static void off_prompt(scan_t *sc) {
  if (sc->prompt_shown) putchar('\n');
  sc->prompt_shown = 0;
}

static void emit_json(scan_t *sc, cJSON *o) {
  off_prompt(sc);
  cJSON_AddNumberToObject(o, "waiting", sc->j.waiting);
  char *t = cJSON_PrintUnformatted(o);
  if (t) puts(t);
  free(t);
  cJSON_Delete(o);
  fflush(stdout);
}

/* A line of feedback: "OK …" or a refusal, always with the number waiting. */
static void say(scan_t *sc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(scan_t *sc, const char *fmt, ...) {
  char line[1024], w[64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  off_prompt(sc);
  printf("%s · %s\n", line, waiting_text(sc, w, sizeof w));
  fflush(stdout);
}

static void refuse(scan_t *sc, const char *code, const char *text) {
  if (sc->c->json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddFalseToObject(o, "ok");
    cJSON_AddStringToObject(o, "code", code);
    cJSON_AddStringToObject(o, "message", text);
    emit_json(sc, o);
    return;
  }
  say(sc, "%s%s", TL_MSG(sc->c, "拒绝：", "REFUSED: "), text);
}

static void notice(scan_t *sc, const char *code, const char *text) {
  if (sc->c->json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "notice", code);
    cJSON_AddStringToObject(o, "message", text);
    emit_json(sc, o);
    return;
  }
  off_prompt(sc);
  printf("%s\n", text);
  fflush(stdout);
}

/* ---------- the local world ---------- */

/* The lookup key of a person here: SHA-256 of "type:normalised number" (the server uses a
 * keyed HMAC; locally only equality matters). -1 when the number is not valid. */
static int person_key(const char *type, const char *number, tl_hmac_t out) {
  int t = tl_id_type_parse(type, strlen(type));
  char norm[64], buf[80];
  if (t < 0 || tl_id_normalize(t, number, strlen(number), norm, sizeof norm) != 0) return -1;
  int n = snprintf(buf, sizeof buf, "%d:%s", t, norm);
  tl_token_hash(buf, (size_t)n, out);
  return 0;
}

typedef struct {
  tl_event_t ev;
  tl_code_t *tubes; /* owned */
} decoded_t;

static void code_of(const cJSON *o, const char *key, tl_code_t out) {
  snprintf(out, sizeof(tl_code_t), "%.32s", tl_js(o, key));
}

/* A recorded event (JSON) as the rules take it. */
static int decode(const cJSON *o, decoded_t *d) {
  memset(d, 0, sizeof *d);
  d->ev.count = -1;
  int t = tl_event_type_parse(tl_js(o, "type"));
  const char *at = tl_js(o, "at");
  if (t < 0 || tl_time_parse(at, strlen(at), &d->ev.at) != 0) return -1;
  d->ev.type = (tl_event_type_t)t;
  snprintf(d->ev.id, sizeof d->ev.id, "%.36s", tl_js(o, "id"));
  code_of(o, "tube", d->ev.tube);
  code_of(o, "box", d->ev.box);
  code_of(o, "round", d->ev.round);
  code_of(o, "lab", d->ev.lab);
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "capacity");
  if (cJSON_IsNumber(v)) d->ev.capacity = v->valueint;
  v = cJSON_GetObjectItemCaseSensitive(o, "count");
  if (cJSON_IsNumber(v)) d->ev.count = v->valueint;
  const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "tubes");
  if (cJSON_IsArray(arr)) {
    int n = cJSON_GetArraySize(arr), i = 0;
    if ((d->tubes = calloc((size_t)n + 1, sizeof *d->tubes)) == NULL) return -1;
    const cJSON *x;
    cJSON_ArrayForEach(x, arr) snprintf(d->tubes[i++], sizeof(tl_code_t), "%.32s", cJSON_IsString(x) ? x->valuestring : "");
    d->ev.tubes = (const tl_code_t *)d->tubes;
    d->ev.ntubes = n;
  }
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "person");
  if (p && person_key(tl_js(p, "id_type"), tl_js(p, "id_number"), d->ev.person) != 0) return -1;
  return 0;
}

/* Applies one of the sampling point's events to the local world with the server's rules.
 * Rounds and labs exist here as far as the local rules care (the server checks them). */
static tl_refusal_t apply(scan_t *sc, const cJSON *o) {
  decoded_t d;
  tl_refusal_t r = {NULL, NULL};
  if (decode(o, &d) != 0) {
    free(d.tubes);
    return (tl_refusal_t){"invalid_event", "The event cannot be read."};
  }
  if (d.ev.type <= TL_EV_BOX_SEAL) {
    int ok = 1;
    if (d.ev.type == TL_EV_TUBE_OPEN) {
      int known = 0;
      for (int i = 0; i < sc->w.nrounds; i++) known |= strcmp(sc->w.rounds[i].code, d.ev.round) == 0;
      if (!known) {
        tl_round_t rd = {.pool_size = tl_journal_capacity(&sc->j, d.ev.round), .closed = 0};
        if (rd.pool_size == 0) rd.pool_size = DEFAULT_CAPACITY;
        snprintf(rd.code, sizeof rd.code, "%s", d.ev.round);
        snprintf(rd.region, sizeof rd.region, "%s", LOCAL_REGION);
        ok = tl_world_add_round(&sc->w, &rd) == 0;
      }
    }
    if (d.ev.type == TL_EV_BOX_SEAL) ok = tl_world_add_lab(&sc->w, d.ev.lab) == 0;
    r = ok ? tl_custody_apply(&sc->w, &sc->me, &d.ev) : (tl_refusal_t){"internal", "Out of memory."};
  }
  free(d.tubes);
  return r;
}

static tl_tube_t *cur_tube(scan_t *sc) {
  return sc->tube[0] ? tl_world_tube(&sc->w, sc->tube, 0) : NULL;
}

/* Replays the journal's live events (not taken back, not refused by the server) into a new
 * local world, and finds the tube being filled and the box being packed. */
static void rebuild(scan_t *sc) {
  tl_world_dispose(&sc->w);
  tl_world_init(&sc->w);
  char last_open[TL_CODE_MAX + 1] = "", last_box[TL_CODE_MAX + 1] = "", last_round[TL_CODE_MAX + 1] = "";
  for (int i = 0; i < sc->j.n; i++) {
    const tl_jentry_t *e = &sc->j.entries[i];
    if (e->state == TL_JE_UNDONE || e->state == TL_JE_REJECTED) continue;
    cJSON *o = cJSON_Parse(e->json);
    if (o && apply(sc, o).code == NULL) {
      if (strcmp(e->type, "tube.open") == 0) {
        snprintf(last_open, sizeof last_open, "%s", tl_js(o, "tube"));
        snprintf(last_round, sizeof last_round, "%s", tl_js(o, "round"));
      }
      if (strcmp(e->type, "box.pack") == 0) snprintf(last_box, sizeof last_box, "%s", tl_js(o, "box"));
    }
    cJSON_Delete(o);
  }
  tl_tube_t *t = last_open[0] ? tl_world_tube(&sc->w, last_open, 0) : NULL;
  snprintf(sc->tube, sizeof sc->tube, "%s", t && !t->sealed_at ? last_open : "");
  if (!sc->box[0]) snprintf(sc->box, sizeof sc->box, "%s", last_box);
  tl_box_t *b = sc->box[0] ? tl_world_box(&sc->w, sc->box, 0) : NULL;
  if (b && b->sealed_at) sc->box[0] = '\0';
  if (!sc->round[0]) snprintf(sc->round, sizeof sc->round, "%s", last_round);
  sc->stale = 0;
}

/* Checks the event with the local rules and records it. Returns NULL, or the refusal's code
 * (nothing was recorded). */
static const char *record(scan_t *sc, const cJSON *ev) {
  tl_refusal_t r = apply(sc, ev);
  if (r.code) return r.code;
  if (tl_journal_append(&sc->j, ev, NULL) != 0) {
    rebuild(sc); /* the world took the event, the journal did not */
    return "journal_io";
  }
  sc->recorded++;
  return NULL;
}

/* The operator's words for a local refusal: the server's codes, and a few of our own. */
static const char *local_text(const tl_cli_t *c, const char *code) {
  if (strcmp(code, "journal_io") == 0)
    return TL_MSG(c, "无法写入离线日志，未记录", "the journal cannot be written: not recorded");
  return tl_journal_code_text(c, code);
}

/* ---------- scans ---------- */

static void seal_tube(scan_t *sc) {
  tl_tube_t *t = cur_tube(sc);
  if (t == NULL) {
    refuse(sc, "no_tube", TL_MSG(sc->c, "没有正在采样的采样管", "no tube is being filled"));
    return;
  }
  int count = t->sampled;
  char tube[TL_CODE_MAX + 1];
  snprintf(tube, sizeof tube, "%s", sc->tube);
  cJSON *ev = tl_journal_event_new("tube.seal");
  if (ev == NULL) return;
  cJSON_AddStringToObject(ev, "tube", tube);
  cJSON_AddNumberToObject(ev, "count", count);
  const char *why = record(sc, ev);
  if (why) {
    refuse(sc, why, local_text(sc->c, why));
  } else {
    sc->tube[0] = '\0';
    if (sc->c->json) {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddTrueToObject(o, "ok");
      cJSON_AddStringToObject(o, "event", "tube.seal");
      cJSON_AddStringToObject(o, "id", tl_js(ev, "id"));
      cJSON_AddStringToObject(o, "tube", tube);
      cJSON_AddNumberToObject(o, "count", count);
      emit_json(sc, o);
    } else {
      say(sc, sc->c->en ? "OK tube %s sealed (%d persons)" : "OK 封管 %s（%d 人）", tube, count);
    }
  }
  cJSON_Delete(ev);
}

static void tube_full(scan_t *sc) {
  notice(sc, "tube_full", TL_MSG(sc->c, "满管，请换管", "tube full, switch tube"));
  seal_tube(sc);
}

static void open_tube(scan_t *sc, const char *code) {
  const tl_cli_t *c = sc->c;
  char msg[256];
  if (!tl_valid_barcode(code, strlen(code))) {
    refuse(sc, "invalid_barcode", local_text(c, "invalid_barcode"));
    return;
  }
  tl_tube_t *t = cur_tube(sc);
  if (t && strcmp(sc->tube, code) == 0) {
    say(sc, c->en ? "OK tube %s is the current tube (%d/%d)" : "OK 采样管 %s 正在使用（%d/%d）", code,
        t->sampled, t->capacity);
    return;
  }
  if (t) {
    snprintf(msg, sizeof msg,
             c->en ? "tube %s is not sealed yet: /seal it first (or /undo an empty one)"
                   : "采样管 %s 尚未封管：请先 /seal（空管可 /undo 撤销）",
             sc->tube);
    refuse(sc, "tube_open", msg);
    return;
  }
  if (!sc->round[0]) {
    refuse(sc, "no_round", TL_MSG(c, "未指定轮次：用 --round CODE 启动，或输入 /round CODE",
                                  "no round: start with --round CODE or type /round CODE"));
    return;
  }
  cJSON *ev = tl_journal_event_new("tube.open");
  if (ev == NULL) return;
  cJSON_AddStringToObject(ev, "tube", code);
  cJSON_AddStringToObject(ev, "round", sc->round);
  if (sc->capacity) cJSON_AddNumberToObject(ev, "capacity", sc->capacity);
  const char *why = record(sc, ev);
  if (why) {
    refuse(sc, why, local_text(c, why));
  } else {
    snprintf(sc->tube, sizeof sc->tube, "%s", code);
    t = cur_tube(sc);
    int cap = t ? t->capacity : 0;
    if (c->json) {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddTrueToObject(o, "ok");
      cJSON_AddStringToObject(o, "event", "tube.open");
      cJSON_AddStringToObject(o, "id", tl_js(ev, "id"));
      cJSON_AddStringToObject(o, "tube", code);
      cJSON_AddStringToObject(o, "round", sc->round);
      cJSON_AddNumberToObject(o, "capacity", cap);
      emit_json(sc, o);
    } else {
      say(sc, c->en ? "OK tube %s opened (%d per tube)" : "OK 开管 %s（每管 %d 人）", code, cap);
    }
  }
  cJSON_Delete(ev);
}

/* Another tube of this journal that holds the person, or NULL. */
static const char *sampled_elsewhere(scan_t *sc, const char *key) {
  for (int i = 0; i < sc->w.ntubes; i++) {
    const tl_tube_t *t = &sc->w.tubes[i];
    if (strcmp(t->code, sc->tube) == 0) continue;
    for (int k = 0; k < t->npersons; k++)
      if (strcmp(t->persons[k], key) == 0) return t->code;
  }
  return NULL;
}

static void add_person(scan_t *sc, int id_type, const char *norm, const char *name, const char *phone) {
  const tl_cli_t *c = sc->c;
  if (cur_tube(sc) == NULL) {
    refuse(sc, "no_tube", TL_MSG(c, "请先扫采样管条码（开管）", "scan a tube first (to open it)"));
    return;
  }
  cJSON *ev = tl_journal_event_new("sample.add");
  if (ev == NULL) return;
  cJSON_AddStringToObject(ev, "tube", sc->tube);
  cJSON *p = cJSON_AddObjectToObject(ev, "person");
  cJSON_AddStringToObject(p, "id_type", tl_id_type_name(id_type));
  cJSON_AddStringToObject(p, "id_number", norm);
  if (name && name[0]) cJSON_AddStringToObject(p, "name", name);
  if (phone && phone[0]) cJSON_AddStringToObject(p, "phone", phone);
  tl_hmac_t key;
  char elsewhere[TL_CODE_MAX + 1] = "";
  if (person_key(tl_id_type_name(id_type), norm, key) == 0) {
    const char *other = sampled_elsewhere(sc, key);
    if (other) snprintf(elsewhere, sizeof elsewhere, "%s", other);
  }
  const char *why = record(sc, ev);
  if (why) {
    refuse(sc, why, local_text(c, why));
    cJSON_Delete(ev);
    return;
  }
  tl_tube_t *t = cur_tube(sc);
  char masked[64] = "";
  if (tl_mask_id(id_type, norm, masked, sizeof masked) != 0) masked[0] = '\0';
  if (c->json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddTrueToObject(o, "ok");
    cJSON_AddStringToObject(o, "event", "sample.add");
    cJSON_AddStringToObject(o, "id", tl_js(ev, "id"));
    cJSON_AddStringToObject(o, "tube", sc->tube);
    cJSON_AddStringToObject(o, "person", masked);
    cJSON_AddNumberToObject(o, "sampled", t ? t->sampled : 0);
    cJSON_AddNumberToObject(o, "capacity", t ? t->capacity : 0);
    emit_json(sc, o);
  } else {
    say(sc, "OK %s %d/%d %s", sc->tube, t ? t->sampled : 0, t ? t->capacity : 0, masked);
  }
  cJSON_Delete(ev);
  if (elsewhere[0]) {
    char msg[256];
    snprintf(msg, sizeof msg,
             c->en ? "note: this person was sampled in tube %s already (recorded as a repeat)"
                   : "注意：此人已在采样管 %s 采过样（将记为重复采样）",
             elsewhere);
    notice(sc, "person_repeat", msg);
  }
  if (t && t->sampled >= t->capacity) tube_full(sc);
}

static void resident_scan(scan_t *sc, const char *text) {
  char norm[TL_RESIDENT_ID_LEN + 1];
  int rc = tl_resident_id_normalize(text, strlen(text), norm);
  if (rc == 0) {
    add_person(sc, TL_ID_RESIDENT, norm, NULL, NULL);
    return;
  }
  const char *zh = rc == TL_RID_ECHECK   ? "身份证号校验位错误，请核对后重新扫码"
                   : rc == TL_RID_EBIRTH ? "身份证号中的出生日期无效"
                   : rc == TL_RID_ELENGTH ? "身份证号应为 18 位"
                                          : "身份证号含有无效字符";
  char msg[256];
  snprintf(msg, sizeof msg, "%s%s", sc->c->en ? tl_resident_id_error(rc) : zh,
           TL_MSG(sc->c, "（未记录）", " (not recorded)"));
  refuse(sc, "invalid_person", msg);
}

/* A health-code text: id_type|id_number|name|phone (name and phone may be empty). */
static void health_code_scan(scan_t *sc, char *text) {
  const tl_cli_t *c = sc->c;
  char *f[5] = {0};
  int n = 0;
  for (char *p = text; n < 5;) {
    f[n++] = p;
    char *bar = strchr(p, '|');
    if (bar == NULL) break;
    *bar = '\0';
    p = bar + 1;
  }
  for (int i = 0; i < n; i++) {
    while (*f[i] == ' ') f[i]++;
    size_t l = strlen(f[i]);
    while (l > 0 && f[i][l - 1] == ' ') f[i][--l] = '\0';
  }
  int type = n >= 2 && n <= 4 ? tl_id_type_parse(f[0], strlen(f[0])) : -1;
  if (type < 0) {
    refuse(sc, "invalid_person", TL_MSG(c, "无法识别的健康码（应为 证件类型|证件号|姓名|电话）",
                                        "not a health code (id_type|id_number|name|phone)"));
    return;
  }
  if (type == TL_ID_RESIDENT) {
    char norm[TL_RESIDENT_ID_LEN + 1];
    if (tl_resident_id_normalize(f[1], strlen(f[1]), norm) != 0) {
      resident_scan(sc, f[1]); /* says why */
      return;
    }
  }
  char norm[64], phone[32] = "";
  const char *name = n >= 3 ? f[2] : "";
  if (tl_id_normalize(type, f[1], strlen(f[1]), norm, sizeof norm) != 0) {
    refuse(sc, "invalid_person", TL_MSG(c, "证件号无效（未记录）", "the ID number is not valid (not recorded)"));
    return;
  }
  if (name[0] && !tl_name_valid(name, strlen(name))) {
    refuse(sc, "invalid_person", TL_MSG(c, "姓名无效（未记录）", "the name is not valid (not recorded)"));
    return;
  }
  if (n >= 4 && f[3][0] && tl_phone_normalize(f[3], strlen(f[3]), phone, sizeof phone) != 0) {
    refuse(sc, "invalid_person", TL_MSG(c, "电话号码无效（未记录）", "the phone number is not valid (not recorded)"));
    return;
  }
  add_person(sc, type, norm, name, phone);
}

/* 15 to 18 digits, maybe ending in X, or anything with non-ASCII bytes (full-width digits):
 * read as a resident ID number, never as a tube code. */
static int looks_like_id(const char *s) {
  size_t n = strlen(s);
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] >= 0x80) return 1;
  if (n < 15 || n > 18) return 0;
  for (size_t i = 0; i < n; i++)
    if (!(s[i] >= '0' && s[i] <= '9') && !(i == n - 1 && (s[i] == 'X' || s[i] == 'x'))) return 0;
  return 1;
}

/* ---------- commands ---------- */

static void print_help(const tl_cli_t *c, FILE *to) {
  fputs(TL_MSG(c,
               "用法: tubeloop scan [--round 轮次] [--capacity N] [--journal 文件] [--wait 秒] [--hold 秒]\n"
               "采样点扫码：每行一个扫码（扫码枪输入后回车），来自终端或管道。\n"
               "  采样管条码          开管（tube.open，需要 --round）\n"
               "  18 位身份证号        加入当前采样管（全角数字、小写 x 可以；校验位当场检查）\n"
               "  证件类型|证件号|姓名|电话  健康码文本（resident_id、passport 或 other）\n"
               "  满管时提示“满管，请换管”并自动封管。\n"
               "命令:\n"
               "  /seal           封当前采样管（带清点人数）\n"
               "  /box 箱码       开始装一个转运箱\n"
               "  /pack [管码…]   把已封管的采样管装入当前转运箱（默认：所有未装箱的）\n"
               "  /sealbox 实验室  封箱，送往该实验室\n"
               "  /undo           撤销最后一条尚未发送的扫码\n"
               "  /tube 管码      开管（管码形如身份证号时用）\n"
               "  /round 轮次     之后的开管用此轮次\n"
               "  /status         当前采样管、转运箱、待发送数\n"
               "  /quit           结束（也可 Ctrl-D）\n"
               "选项:\n"
               "  --round 轮次     开管所属轮次（默认：离线日志中上次开管的轮次）\n"
               "  --capacity N    每管人数 1、5、8、10 或 20。默认用轮次的混采比例：离线时无从得知，\n"
               "                  先按 10 人提示满管；开管被服务器接收后查询实际容量并记住\n"
               "  --journal 文件   离线日志（默认：$XDG_STATE_HOME/tubeloop/ 或 ~/.local/state/tubeloop/ 下\n"
               "                  按服务器地址和令牌的哈希命名的文件）\n"
               "  --wait 秒       结束时继续上传的最长时间（默认 10）\n"
               "  --hold 秒       扫码保留多久再发送，以便 /undo（默认 2）\n"
               "每条扫码先写入离线日志并落盘，再显示 OK；后台按顺序每批最多 100 条上传，失败时退避重试。\n"
               "断网时照常扫码，提示中显示待发送条数。服务器拒绝的扫码在回答到达时提示。\n"
               "退出码：0 正常；1 有扫码被服务器拒绝或无法上传（令牌无效等）。\n",
               "usage: tubeloop scan [--round CODE] [--capacity N] [--journal FILE] [--wait S] [--hold S]\n"
               "Sampling point scanning: one scan per line (a scanner types and presses Enter), from a\n"
               "terminal or a pipe.\n"
               "  a tube barcode        opens the tube (tube.open; needs a round)\n"
               "  an 18-character ID    adds the person to the tube (full-width digits and x are fine;\n"
               "                        the check digit is checked here, before anything is recorded)\n"
               "  id_type|id_number|name|phone   a health-code text (resident_id, passport or other)\n"
               "  At capacity: \"tube full, switch tube\", and the tube is sealed.\n"
               "commands:\n"
               "  /seal            seal the current tube (with the persons counted)\n"
               "  /box CODE        start packing a box\n"
               "  /pack [TUBE...]  pack sealed tubes into the box (default: every sealed, unpacked one)\n"
               "  /sealbox LAB     seal the box to a lab\n"
               "  /undo            take back the last scan not yet sent\n"
               "  /tube CODE       open a tube (for a tube code that looks like an ID number)\n"
               "  /round CODE      the round of the tubes opened from now on\n"
               "  /status          the current tube, box, and what waits to be sent\n"
               "  /quit            stop (or Ctrl-D)\n"
               "options:\n"
               "  --round CODE     the round of opened tubes (default: the round of the journal's last tube)\n"
               "  --capacity N     persons per tube: 1, 5, 8, 10 or 20. Default: the round's pool size,\n"
               "                   which cannot be known offline: the tube-full prompt counts 10 until the\n"
               "                   server accepted a tube.open, then asks the tube's capacity and keeps it\n"
               "  --journal FILE   the journal (default: a file under $XDG_STATE_HOME/tubeloop/ or\n"
               "                   ~/.local/state/tubeloop/, named by a hash of the server URL and token)\n"
               "  --wait S         how long to keep sending at the end (default 10)\n"
               "  --hold S         how long a scan stays back before it is sent, for /undo (default 2)\n"
               "Each scan is written to the journal and synced to disk before OK is shown; a background\n"
               "sender uploads in order, at most 100 per request, retrying with backoff. Offline,\n"
               "scanning goes on and the prompt shows how many scans wait. Refusals are reported when the\n"
               "server's answer arrives. Exit status: 0; 1 when the server refused scans or uploading\n"
               "stopped (a bad token).\n"),
        to);
}

static void cmd_status(scan_t *sc) {
  const tl_cli_t *c = sc->c;
  tl_tube_t *t = cur_tube(sc);
  tl_box_t *b = sc->box[0] ? tl_world_box(&sc->w, sc->box, 0) : NULL;
  tl_buf_t unpacked;
  tl_buf_init(&unpacked);
  int nunpacked = 0;
  for (int i = 0; i < sc->w.ntubes; i++) {
    const tl_tube_t *x = &sc->w.tubes[i];
    if (x->sealed_at && !x->box[0] && tl_buf_appendf(&unpacked, "%s%s", nunpacked ? " " : "", x->code) == 0)
      nunpacked++;
  }
  char tube[80] = "", box[80] = "", waiting[32];
  if (t) snprintf(tube, sizeof tube, "%s %d/%d", t->code, t->sampled, t->capacity);
  if (sc->box[0]) snprintf(box, sizeof box, "%s (%d)", sc->box, b ? b->packed : 0);
  snprintf(waiting, sizeof waiting, "%d", sc->j.waiting);
  const char *link = sc->s.fatal ? sc->s.error
                     : sc->s.online == 0 ? sc->s.error
                     : sc->s.online == 1 ? TL_MSG(c, "在线", "online")
                                         : TL_MSG(c, "尚未连接", "not tried yet");
  if (c->json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "round", sc->round);
    cJSON_AddStringToObject(o, "tube", t ? t->code : "");
    cJSON_AddNumberToObject(o, "sampled", t ? t->sampled : 0);
    cJSON_AddNumberToObject(o, "capacity", t ? t->capacity : 0);
    cJSON_AddStringToObject(o, "box", sc->box);
    cJSON_AddNumberToObject(o, "box_tubes", b ? b->packed : 0);
    cJSON_AddStringToObject(o, "unpacked", tl_buf_cstr(&unpacked));
    cJSON_AddStringToObject(o, "link", link);
    cJSON_AddStringToObject(o, "journal", sc->j.path);
    emit_json(sc, o);
  } else {
    off_prompt(sc);
    tl_table_t tb;
    tl_table_init(&tb, 2);
    tl_table_row(&tb, TL_MSG(c, "轮次", "round"), sc->round);
    tl_table_row(&tb, TL_MSG(c, "采样管", "tube"), tube);
    tl_table_row(&tb, TL_MSG(c, "转运箱", "box"), box);
    tl_table_row(&tb, TL_MSG(c, "待装箱", "sealed, unpacked"), tl_buf_cstr(&unpacked));
    tl_table_row(&tb, TL_MSG(c, "待发送", "waiting"), waiting);
    tl_table_row(&tb, TL_MSG(c, "连接", "link"), link);
    tl_table_row(&tb, TL_MSG(c, "离线日志", "journal"), sc->j.path);
    tl_table_print(&tb);
    tl_table_dispose(&tb);
    fflush(stdout);
  }
  tl_buf_dispose(&unpacked);
}

static void cmd_box(scan_t *sc, const char *code) {
  const tl_cli_t *c = sc->c;
  char msg[256];
  if (code == NULL || !tl_valid_barcode(code, strlen(code))) {
    refuse(sc, "invalid_barcode", TL_MSG(c, "用法：/box 转运箱条码", "usage: /box BOX-CODE"));
    return;
  }
  tl_box_t *cur = sc->box[0] ? tl_world_box(&sc->w, sc->box, 0) : NULL;
  if (cur && cur->packed && !cur->sealed_at && strcmp(sc->box, code) != 0) {
    snprintf(msg, sizeof msg, c->en ? "box %s is not sealed yet: /sealbox LAB first" : "转运箱 %s 尚未封箱：请先 /sealbox 实验室",
             sc->box);
    refuse(sc, "box_open", msg);
    return;
  }
  tl_box_t *b = tl_world_box(&sc->w, code, 0);
  if (b && b->sealed_at) {
    refuse(sc, "box_sealed", local_text(c, "box_sealed"));
    return;
  }
  snprintf(sc->box, sizeof sc->box, "%s", code);
  if (c->json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddTrueToObject(o, "ok");
    cJSON_AddStringToObject(o, "box", code);
    emit_json(sc, o);
  } else {
    say(sc, c->en ? "OK box %s: /pack puts the sealed tubes in" : "OK 转运箱 %s：/pack 装入已封管的采样管", code);
  }
}

static void cmd_pack(scan_t *sc, char *args) {
  const tl_cli_t *c = sc->c;
  if (!sc->box[0]) {
    refuse(sc, "no_box", TL_MSG(c, "请先 /box 转运箱条码", "start a box first: /box CODE"));
    return;
  }
  cJSON *ev = tl_journal_event_new("box.pack");
  if (ev == NULL) return;
  cJSON_AddStringToObject(ev, "box", sc->box);
  cJSON *arr = cJSON_AddArrayToObject(ev, "tubes");
  int n = 0;
  char *save = NULL;
  for (char *tok = args ? strtok_r(args, " \t", &save) : NULL; tok; tok = strtok_r(NULL, " \t", &save), n++)
    cJSON_AddItemToArray(arr, cJSON_CreateString(tok));
  for (int i = 0; args == NULL && i < sc->w.ntubes; i++) {
    const tl_tube_t *t = &sc->w.tubes[i];
    if (t->sealed_at && !t->box[0] && n < 500) {
      cJSON_AddItemToArray(arr, cJSON_CreateString(t->code));
      n++;
    }
  }
  if (n == 0) {
    refuse(sc, "nothing_to_pack", TL_MSG(c, "没有待装箱的已封管采样管", "no sealed tube waits to be packed"));
    cJSON_Delete(ev);
    return;
  }
  const char *why = record(sc, ev);
  if (why) {
    refuse(sc, why, local_text(c, why));
  } else {
    tl_box_t *b = tl_world_box(&sc->w, sc->box, 0);
    if (c->json) {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddTrueToObject(o, "ok");
      cJSON_AddStringToObject(o, "event", "box.pack");
      cJSON_AddStringToObject(o, "id", tl_js(ev, "id"));
      cJSON_AddStringToObject(o, "box", sc->box);
      cJSON_AddItemToObject(o, "tubes", cJSON_Duplicate(arr, 1));
      cJSON_AddNumberToObject(o, "box_tubes", b ? b->packed : n);
      emit_json(sc, o);
    } else {
      say(sc, c->en ? "OK %d tube(s) packed into box %s (%d in it)" : "OK %d 管装入转运箱 %s（箱内 %d 管）", n, sc->box,
          b ? b->packed : n);
    }
  }
  cJSON_Delete(ev);
}

static void cmd_sealbox(scan_t *sc, const char *lab) {
  const tl_cli_t *c = sc->c;
  if (lab == NULL || !tl_valid_code(lab, strlen(lab))) {
    refuse(sc, "invalid_code", TL_MSG(c, "用法：/sealbox 实验室编码", "usage: /sealbox LAB"));
    return;
  }
  if (!sc->box[0]) {
    refuse(sc, "no_box", TL_MSG(c, "请先 /box 转运箱条码", "start a box first: /box CODE"));
    return;
  }
  tl_box_t *b = tl_world_box(&sc->w, sc->box, 0);
  int count = b ? b->packed : 0;
  char box[TL_CODE_MAX + 1];
  snprintf(box, sizeof box, "%s", sc->box);
  cJSON *ev = tl_journal_event_new("box.seal");
  if (ev == NULL) return;
  cJSON_AddStringToObject(ev, "box", box);
  cJSON_AddStringToObject(ev, "lab", lab);
  cJSON_AddNumberToObject(ev, "count", count);
  const char *why = record(sc, ev);
  if (why) {
    refuse(sc, why, local_text(c, why));
  } else {
    sc->box[0] = '\0';
    if (c->json) {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddTrueToObject(o, "ok");
      cJSON_AddStringToObject(o, "event", "box.seal");
      cJSON_AddStringToObject(o, "id", tl_js(ev, "id"));
      cJSON_AddStringToObject(o, "box", box);
      cJSON_AddStringToObject(o, "lab", lab);
      cJSON_AddNumberToObject(o, "count", count);
      emit_json(sc, o);
    } else {
      say(sc, c->en ? "OK box %s sealed to %s (%d tube(s))" : "OK 封箱 %s → %s（%d 管）", box, lab, count);
    }
  }
  cJSON_Delete(ev);
}

static void cmd_undo(scan_t *sc) {
  const tl_cli_t *c = sc->c;
  int i = sc->j.n - 1;
  while (i >= 0 && (sc->j.entries[i].state == TL_JE_UNDONE || sc->j.entries[i].state == TL_JE_REJECTED)) i--;
  if (i < 0) {
    refuse(sc, "nothing_to_undo", TL_MSG(c, "没有可撤销的扫码", "nothing to take back"));
    return;
  }
  tl_jentry_t *e = &sc->j.entries[i];
  char subject[64];
  tl_journal_subject(e, subject, sizeof subject);
  int rc = tl_journal_undo(&sc->j, i);
  if (rc == TL_EBUSY) {
    refuse(sc, "already_sent", TL_MSG(c, "最后一条扫码已发送，无法撤销", "the last scan was sent already: it cannot be taken back"));
    return;
  }
  if (rc != 0) {
    refuse(sc, "journal_io", local_text(c, "journal_io"));
    return;
  }
  rebuild(sc);
  if (c->json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddTrueToObject(o, "ok");
    cJSON_AddStringToObject(o, "undone", e->type);
    cJSON_AddStringToObject(o, "id", e->id);
    emit_json(sc, o);
  } else {
    say(sc, c->en ? "OK taken back: %s %s" : "OK 已撤销：%s %s", e->type, subject);
  }
}

/* Returns 1 to stop. */
static int command(scan_t *sc, char *line) {
  const tl_cli_t *c = sc->c;
  char *cmd = line, *rest = line + strcspn(line, " \t");
  if (*rest) *rest++ = '\0';
  rest += strspn(rest, " \t");
  /* the first argument, and the rest of them (for /pack) */
  char *args = *rest ? rest : NULL, first[64] = "";
  sscanf(rest, "%63s", first);
  char *arg = first[0] ? first : NULL;
  if (strcmp(cmd, "/quit") == 0 || strcmp(cmd, "/q") == 0 || strcmp(cmd, "/exit") == 0) return 1;
  if (strcmp(cmd, "/seal") == 0) seal_tube(sc);
  else if (strcmp(cmd, "/box") == 0) cmd_box(sc, arg);
  else if (strcmp(cmd, "/pack") == 0) cmd_pack(sc, args);
  else if (strcmp(cmd, "/sealbox") == 0) cmd_sealbox(sc, arg);
  else if (strcmp(cmd, "/undo") == 0) cmd_undo(sc);
  else if (strcmp(cmd, "/status") == 0) cmd_status(sc);
  else if (strcmp(cmd, "/tube") == 0) {
    if (arg) open_tube(sc, arg);
    else refuse(sc, "invalid_barcode", TL_MSG(c, "用法：/tube 管码", "usage: /tube CODE"));
  } else if (strcmp(cmd, "/round") == 0) {
    if (arg && tl_valid_code(arg, strlen(arg))) {
      snprintf(sc->round, sizeof sc->round, "%.32s", arg);
      say(sc, c->en ? "OK round %s" : "OK 轮次 %s", arg);
    } else {
      refuse(sc, "invalid_code", TL_MSG(c, "用法：/round 轮次编码", "usage: /round CODE"));
    }
  } else if (strcmp(cmd, "/help") == 0 || strcmp(cmd, "/?") == 0) {
    off_prompt(sc);
    print_help(c, stdout);
    fflush(stdout);
  } else {
    refuse(sc, "unknown_command", TL_MSG(c, "未知命令（/help 查看命令）", "unknown command (/help lists them)"));
  }
  return 0;
}

/* ---------- the loop ---------- */

/* Brings the local world up to date with answers that arrived, and seals a tube that a
 * learned pool size made full. */
static void settle(scan_t *sc) {
  if (sc->stale) rebuild(sc);
  if (sc->tell_drained && sc->j.waiting == 0) {
    sc->tell_drained = 0;
    notice(sc, "drained", TL_MSG(sc->c, "离线期间的扫码已全部上传", "everything scanned offline is sent"));
  }
  if (sc->check_full) {
    sc->check_full = 0;
    tl_tube_t *t = cur_tube(sc);
    if (t && t->sampled >= t->capacity) tube_full(sc);
  }
}

static int on_line(void *ud, char *line) {
  scan_t *sc = ud;
  sc->prompt_shown = 0; /* the Enter moved the terminal to a new line */
  settle(sc);
  if (line[0] == '\0') return 0;
  if (line[0] == '/') return command(sc, line);
  if (strchr(line, '|')) health_code_scan(sc, line);
  else if (looks_like_id(line)) resident_scan(sc, line);
  else if (tl_valid_barcode(line, strlen(line))) open_tube(sc, line);
  else
    refuse(sc, "unrecognised", TL_MSG(sc->c, "无法识别：不是采样管条码、身份证号或健康码",
                                      "not recognised: no tube code, ID number or health code"));
  return 0;
}

static void on_idle(void *ud) {
  scan_t *sc = ud;
  settle(sc);
  if (!sc->tty || sc->c->json || sc->prompt_shown) return;
  tl_tube_t *t = cur_tube(sc);
  char w[64];
  if (t) printf("[%s %d/%d · %s", t->code, t->sampled, t->capacity, waiting_text(sc, w, sizeof w));
  else printf("[%s · %s", TL_MSG(sc->c, "未开管", "no tube"), waiting_text(sc, w, sizeof w));
  if (sc->s.online == 0 || sc->s.fatal) printf(" · %s", TL_MSG(sc->c, "离线", "offline"));
  printf("] > ");
  fflush(stdout);
  sc->prompt_shown = 1;
}

static void report_rejection(tl_cli_t *c, const tl_jentry_t *e, int *prompt_shown) {
  char subject[64];
  tl_journal_subject(e, subject, sizeof subject);
  if (prompt_shown && *prompt_shown) {
    putchar('\n');
    *prompt_shown = 0;
  }
  if (c->json) {
    cJSON *o = cJSON_CreateObject(), *r = cJSON_AddObjectToObject(o, "rejected");
    cJSON_AddStringToObject(r, "id", e->id);
    cJSON_AddStringToObject(r, "type", e->type);
    cJSON_AddStringToObject(r, "subject", subject);
    cJSON_AddStringToObject(r, "code", e->code);
    cJSON_AddStringToObject(r, "message", tl_journal_code_text(c, e->code));
    char *t = cJSON_PrintUnformatted(o);
    if (t) puts(t);
    free(t);
    cJSON_Delete(o);
  } else {
    printf("%s %s %s: %s (%s)\n", TL_MSG(c, "服务器拒绝", "server refused"), e->type, subject,
           tl_journal_code_text(c, e->code), e->code);
  }
  fflush(stdout);
}

static void on_capacity(void *ud, long status, const cJSON *json) {
  scan_t *sc = ud;
  const cJSON *cap = json ? cJSON_GetObjectItemCaseSensitive(json, "capacity") : NULL;
  if (status != 200 || !cJSON_IsNumber(cap) || cap->valueint < 1) return; /* asked again later */
  int n = cap->valueint;
  if (tl_journal_set_capacity(&sc->j, sc->probe_round, n) != 0) return;
  sc->stale = 1;
  sc->check_full = 1;
  if (n == DEFAULT_CAPACITY) return; /* what was counted with: nothing to tell */
  char msg[200];
  snprintf(msg, sizeof msg, sc->c->en ? "round %s: %d persons per tube (from the server)" : "轮次 %s：每管 %d 人（服务器）",
           sc->probe_round, n);
  notice(sc, "capacity", msg);
}

static void ack_entry(scan_t *sc, const tl_jentry_t *e) {
  if (e->state == TL_JE_REJECTED) {
    sc->refused_by_server++;
    sc->stale = 1;
    report_rejection(sc->c, e, &sc->prompt_shown);
    return;
  }
  if (strcmp(e->type, "tube.open") != 0) return;
  cJSON *o = cJSON_Parse(e->json);
  const char *round = tl_js(o, "round");
  /* the pool size the server gave a tube opened without one: ask once per round */
  if (o && !cJSON_GetObjectItemCaseSensitive(o, "capacity") && tl_journal_capacity(&sc->j, round) == 0 &&
      !sc->s.get_path[0]) {
    char path[128];
    snprintf(path, sizeof path, "/v1/tubes/%s", tl_js(o, "tube"));
    snprintf(sc->probe_round, sizeof sc->probe_round, "%s", round);
    (void)tl_jsend_get(&sc->s, path, on_capacity, sc);
  }
  cJSON_Delete(o);
}

static void on_ack(void *ud, int index) {
  scan_t *sc = ud;
  ack_entry(sc, &sc->j.entries[index]);
}

static void on_link(void *ud, int online, const char *error) {
  scan_t *sc = ud;
  char msg[400];
  if (online)
    snprintf(msg, sizeof msg, "%s", TL_MSG(sc->c, "已连接服务器，开始上传", "connected: uploading"));
  else
    snprintf(msg, sizeof msg, "%s: %s%s", TL_MSG(sc->c, "离线", "offline"), error,
             sc->s.fatal ? TL_MSG(sc->c, "；上传已停止", "; uploading stopped")
                         : TL_MSG(sc->c, "；扫码照常记录，联网后自动上传", "; scans are kept and sent when the server is back"));
  if (online && !sc->said_offline) return; /* only "back online" is news */
  sc->said_offline = !online;
  sc->tell_drained = online;
  notice(sc, online ? "online" : "offline", msg);
}

static int parse_int(const char *v, int lo, int hi, int *out) {
  char *end;
  long n = strtol(v, &end, 10);
  if (*v == '\0' || *end || n < lo || n > hi) return -1;
  *out = (int)n;
  return 0;
}

int tl_cmd_scan(tl_cli_t *c, int argc, char **argv) {
  tl_jopts_t o = {.journal = NULL, .wait_s = DEFAULT_WAIT_S};
  const char *round = NULL, *v;
  int capacity = 0, hold = DEFAULT_HOLD_S;
  for (int i = 1; i < argc; i++) {
    int r = tl_jopts_parse(&o, &i, argc, argv);
    if (r < 0) return 2;
    if (r) continue;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      print_help(c, stdout);
      return 0;
    } else if ((v = tl_jarg(&i, argc, argv, "--round")) != NULL) {
      if (!tl_valid_code(v, strlen(v))) return tl_cli_fail("--round: %s", TL_MSG(c, "轮次编码无效", "not a round code"));
      round = v;
    } else if ((v = tl_jarg(&i, argc, argv, "--capacity")) != NULL) {
      if (parse_int(v, 1, 20, &capacity) != 0 ||
          (capacity != 1 && capacity != 5 && capacity != 8 && capacity != 10 && capacity != 20))
        return tl_cli_fail("--capacity: %s", TL_MSG(c, "应为 1、5、8、10 或 20", "must be 1, 5, 8, 10 or 20"));
    } else if ((v = tl_jarg(&i, argc, argv, "--hold")) != NULL) {
      if (parse_int(v, 0, 3600, &hold) != 0) return tl_cli_fail("--hold: %s", v);
    } else {
      tl_cli_fail("%s: %s", TL_MSG(c, "未知参数", "unknown argument"), argv[i]);
      print_help(c, stderr);
      return 2;
    }
  }
  scan_t *sc = calloc(1, sizeof *sc);
  if (sc == NULL) return tl_cli_fail("out of memory");
  sc->c = c;
  if (tl_jsession_open(c, &o, 1, &sc->j, &sc->s) != 0) {
    free(sc);
    return 1;
  }
  sc->s.hold_ms = (int64_t)hold * 1000;
  sc->s.on_ack = on_ack;
  sc->s.on_link = on_link;
  sc->s.ud = sc;
  sc->me.role = TL_ROLE_COLLECTOR;
  snprintf(sc->me.code, sizeof sc->me.code, "local");
  snprintf(sc->me.region, sizeof sc->me.region, "%s", LOCAL_REGION);
  if (round) snprintf(sc->round, sizeof sc->round, "%s", round);
  sc->capacity = capacity;
  sc->tty = isatty(0);
  tl_world_init(&sc->w);
  rebuild(sc);

  /* what the operator needs to know before the first scan, on stderr (stdout is feedback) */
  int learned = sc->round[0] ? tl_journal_capacity(&sc->j, sc->round) : 0;
  char cap[200];
  if (capacity) snprintf(cap, sizeof cap, c->en ? "%d per tube" : "每管 %d 人", capacity);
  else if (learned) snprintf(cap, sizeof cap, c->en ? "%d per tube (the round's)" : "每管 %d 人（轮次混采比例）", learned);
  else
    snprintf(cap, sizeof cap, "%s",
             TL_MSG(c, "未指定 --capacity：先按每管 10 人提示满管，开管被接收后以服务器的轮次混采比例为准",
                    "no --capacity: counting 10 per tube until the server tells the round's pool size"));
  fprintf(stderr, c->en ? "tubeloop scan: round %s; %s; %d waiting; /help lists the commands\n"
                        : "tubeloop scan：轮次 %s；%s；待发送 %d；/help 查看命令\n",
          sc->round[0] ? sc->round : "-", cap, sc->j.waiting);
  if (sc->tube[0]) {
    tl_tube_t *t = cur_tube(sc);
    fprintf(stderr, c->en ? "tubeloop scan: tube %s continues (%d/%d)\n" : "tubeloop scan：继续采样管 %s（%d/%d）\n",
            sc->tube, t ? t->sampled : 0, t ? t->capacity : 0);
  }

  tl_jsend_read_lines(&sc->s, on_line, on_idle, sc);
  off_prompt(sc);
  settle(sc);
  if (sc->j.waiting > 0 && !sc->s.fatal && !c->json)
    fprintf(stderr, "%s\n", TL_MSG(c, "正在上传…", "uploading…"));
  tl_jsend_flush(&sc->s, o.wait_s * 1000);
  settle(sc);

  tl_tube_t *t = cur_tube(sc);
  int rc = 0;
  if (c->json) {
    cJSON *sum = cJSON_CreateObject(), *s = cJSON_AddObjectToObject(sum, "summary");
    cJSON_AddNumberToObject(s, "recorded", (double)sc->recorded);
    cJSON_AddNumberToObject(s, "accepted", (double)sc->s.accepted);
    cJSON_AddNumberToObject(s, "duplicate", (double)sc->s.duplicate);
    cJSON_AddNumberToObject(s, "rejected", (double)sc->s.rejected);
    cJSON_AddStringToObject(s, "open_tube", t ? t->code : "");
    if (sc->s.fatal || sc->s.online == 0) cJSON_AddStringToObject(s, "error", sc->s.error);
    emit_json(sc, sum);
  } else {
    printf(c->en ? "recorded %ld; accepted %ld, refused %ld; %d waiting\n"
                 : "本次记录 %ld 条；服务器已接收 %ld 条，拒绝 %ld 条；待发送 %d 条\n",
           sc->recorded, sc->s.accepted + sc->s.duplicate, sc->s.rejected, sc->j.waiting);
    if (t)
      printf(c->en ? "tube %s is not sealed (%d/%d)\n" : "采样管 %s 未封管（%d/%d）\n", t->code, t->sampled, t->capacity);
    if (sc->j.waiting > 0 && !sc->s.fatal)
      printf("%s\n", TL_MSG(c, "未发送的扫码保存在离线日志中，下次运行 tubeloop scan 或 tubeloop sync 时上传",
                            "what waits is kept in the journal and sent by the next tubeloop scan or tubeloop sync"));
    fflush(stdout);
  }
  if (sc->s.fatal)
    rc = tl_cli_fail("%s: %s", TL_MSG(c, "上传已停止", "uploading stopped"), sc->s.error);
  else if (sc->refused_by_server)
    rc = tl_cli_fail(c->en ? "%ld scans refused by the server (see above)" : "%ld 条扫码被服务器拒绝（见上）",
                     sc->refused_by_server);
  tl_world_dispose(&sc->w);
  tl_jsession_close(&sc->j, &sc->s);
  free(sc);
  return rc;
}

/* ---------- sync ---------- */

typedef struct {
  tl_cli_t *c;
  tl_journal_t *j;
  cJSON *rejected; /* --json: the refusals of this run */
} sync_t;

static void sync_ack(void *ud, int index) {
  sync_t *y = ud;
  const tl_jentry_t *e = &y->j->entries[index];
  if (e->state != TL_JE_REJECTED) return;
  if (y->c->json) {
    char subject[64];
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "id", e->id);
    cJSON_AddStringToObject(r, "type", e->type);
    cJSON_AddStringToObject(r, "subject", tl_journal_subject(e, subject, sizeof subject));
    cJSON_AddStringToObject(r, "code", e->code);
    cJSON_AddItemToArray(y->rejected, r);
  } else {
    report_rejection(y->c, e, NULL);
  }
}

int tl_cmd_sync(tl_cli_t *c, int argc, char **argv) {
  tl_jopts_t o = {.journal = NULL, .wait_s = 30};
  long batch = TL_JOURNAL_BATCH;
  for (int i = 1; i < argc; i++) {
    int r = tl_jopts_parse(&o, &i, argc, argv);
    if (r < 0) return 2;
    if (r) continue;
    const char *v = tl_jarg(&i, argc, argv, "--batch");
    if (v != NULL) {
      char *end;
      batch = strtol(v, &end, 10);
      if (*end || batch < 1 || batch > TL_JOURNAL_BATCH)
        return tl_cli_fail("%s: %s", TL_MSG(c, "--batch 须为 1–100", "--batch must be 1-100"), v) + 1;
      continue;
    }
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(TL_MSG(c,
                   "用法: tubeloop sync [--journal 文件] [--wait 秒] [--batch N]\n"
                   "上传离线日志中尚未被服务器确认的事件（scan、courier、lab 共用的日志），按顺序每批最多 100 条\n"
                   "（--batch N：每批最多 N 条，信号差时用小批），\n"
                   "失败时退避重试，最长 --wait 秒（默认 30）。同一事件重发时服务器答“重复”，不会重复生效。\n"
                   "被拒绝的事件逐条列出。退出码：0 全部已确认；1 仍有未确认的（附条数和原因）。\n",
                   "usage: tubeloop sync [--journal FILE] [--wait S] [--batch N]\n"
                   "Uploads what the journal (shared by scan, courier and lab) holds unacknowledged, in order,\n"
                   "at most 100 events per request (--batch N: at most N; smaller suits a weak signal),\n"
                   "retrying with backoff for up to --wait seconds (default 30).\n"
                   "An event sent again is answered \"duplicate\" and never applied twice. Refused events are\n"
                   "listed. Exit status: 0 when everything is acknowledged; 1 (with the count and why) otherwise.\n"),
            stdout);
      return 0;
    }
    return tl_cli_fail("%s: %s", TL_MSG(c, "未知参数", "unknown argument"), argv[i]);
  }
  tl_journal_t j;
  tl_jsend_t s;
  int rc = tl_jsession_open(c, &o, 0, &j, &s);
  if (rc > 0) return rc;
  if (rc < 0) { /* no journal: nothing was ever recorded here */
    if (c->json) puts("{\"sent\":0,\"accepted\":0,\"duplicate\":0,\"rejected\":[],\"waiting\":0}");
    else puts(TL_MSG(c, "没有离线日志：无需上传", "no journal: nothing to send"));
    return 0;
  }
  sync_t y = {c, &j, cJSON_CreateArray()};
  s.batch_max = (int)batch;
  s.on_ack = sync_ack;
  s.ud = &y;
  int before = j.waiting;
  int left = tl_jsend_flush(&s, o.wait_s * 1000);
  if (c->json) {
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "sent", before - left);
    cJSON_AddNumberToObject(out, "accepted", (double)s.accepted);
    cJSON_AddNumberToObject(out, "duplicate", (double)s.duplicate);
    cJSON_AddItemToObject(out, "rejected", y.rejected);
    y.rejected = NULL;
    cJSON_AddNumberToObject(out, "waiting", left);
    if (left) cJSON_AddStringToObject(out, "error", s.error);
    char *t = cJSON_PrintUnformatted(out);
    if (t) puts(t);
    free(t);
    cJSON_Delete(out);
  } else {
    printf(c->en ? "sent %d: accepted %ld, duplicate %ld, refused %ld; %d waiting\n"
                 : "已上传 %d 条：接收 %ld，重复 %ld，拒绝 %ld；待发送 %d\n",
           before - left, s.accepted, s.duplicate, s.rejected, left);
  }
  fflush(stdout);
  cJSON_Delete(y.rejected);
  rc = 0;
  if (left)
    rc = tl_cli_fail(c->en ? "%d events not acknowledged: %s" : "%d 条事件未被确认：%s", left,
                     s.error[0] ? s.error : TL_MSG(c, "超时", "timed out"));
  tl_jsession_close(&j, &s);
  return rc;
}
