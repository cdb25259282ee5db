/* tubeloop lab receive|reject|upload: the lab's side of the loop.
 *
 * `receive BOX` reads the tube codes scanned out of the box (one per line, ending with an
 * empty line or end of input; or given after BOX), records one box.receive, and then asks
 * the server for the box (GET /v1/boxes/BOX) to show the tubes missing from it and those
 * that were not on its manifest. `reject TUBE --reason R` records a tube.reject. Both go
 * through the journal (journal.h): a lab is offline sometimes as well. `upload` (results)
 * lives in lab_upload.c. */
#include "journal.h"

#include "domain/custody.h"
#include "domain/validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TUBES 500 /* the server's limit per box.receive */

/* Written in lab_upload.c; this weak stand-in only keeps the binary linkable without it. */
extern int tl_cmd_lab_upload(tl_cli_t *c, int argc, char **argv);
__attribute__((weak)) int tl_cmd_lab_upload(tl_cli_t *c, int argc, char **argv) {
  (void)argc;
  (void)argv;
  return tl_cli_fail("lab upload: %s", TL_MSG(c, "此版本尚未提供", "not available in this build yet"));
}

static const char *const state_names[] = {"waiting", "waiting", "accepted", "duplicate", "rejected", "undone"};

static void help(const tl_cli_t *c, FILE *to) {
  fputs(TL_MSG(c,
               "用法: tubeloop lab receive 箱码 [管码…] [--journal 文件] [--wait 秒]\n"
               "      tubeloop lab reject 管码 --reason leak|unlabeled|insufficient|other [--journal 文件] [--wait 秒]\n"
               "      tubeloop lab upload …（检测结果，见 tubeloop lab upload --help）\n"
               "receive：逐行扫描从箱中取出的采样管，空行或输入结束（Ctrl-D）为止；记录收样（box.receive），\n"
               "  上传后向服务器查询该箱，列出缺失的管（清单上有、未扫到）和多出的管（扫到、清单上没有）。\n"
               "reject：拒收采样管（tube.reject），原因 leak 渗漏、unlabeled 无标签、insufficient 样本量不足、other 其他。\n"
               "先写入离线日志再上传；离线时保存，由下次命令或 tubeloop sync 上传。\n"
               "  --wait 秒   结束时继续上传的最长时间（默认 10）\n"
               "退出码：0 已记录（离线时待发送）；1 参数无效或被服务器拒绝。\n",
               "usage: tubeloop lab receive BOX [TUBE...] [--journal FILE] [--wait S]\n"
               "       tubeloop lab reject TUBE --reason leak|unlabeled|insufficient|other [--journal FILE] [--wait S]\n"
               "       tubeloop lab upload ... (results; see tubeloop lab upload --help)\n"
               "receive: scan the tubes taken out of the box, one per line, ending with an empty line or\n"
               "  end of input (Ctrl-D); records the receipt (box.receive), sends it, then asks the server\n"
               "  for the box and lists the missing tubes (on the manifest, not scanned) and the unexpected\n"
               "  ones (scanned, not on the manifest).\n"
               "reject: refuse a tube (tube.reject) for a reason: leak, unlabeled, insufficient or other.\n"
               "Recorded in the journal first, then sent; offline they wait for the next command or\n"
               "tubeloop sync.\n"
               "  --wait S   how long to keep sending at the end (default 10)\n"
               "Exit status: 0 recorded (waiting when offline); 1 bad arguments, or refused by the server.\n"),
        to);
}

typedef struct {
  tl_cli_t *c;
  tl_jsend_t *s;
  tl_journal_t *j;
  const char *box;
  cJSON *tubes;      /* the codes scanned, in order */
  int tty, prompt_shown;
} receive_t;

static int has_tube(const cJSON *arr, const char *code) {
  const cJSON *x;
  cJSON_ArrayForEach(x, arr) if (strcmp(x->valuestring, code) == 0) return 1;
  return 0;
}

/* One scanned tube. Returns 0, or 1 when refused here. */
static int scan_tube(receive_t *r, const char *code, int say) {
  const tl_cli_t *c = r->c;
  int n = cJSON_GetArraySize(r->tubes);
  const char *why = NULL;
  if (!tl_valid_barcode(code, strlen(code))) why = TL_MSG(c, "不是采样管条码", "not a tube code");
  else if (n >= MAX_TUBES) why = TL_MSG(c, "一箱最多 500 管", "at most 500 tubes per box");
  if (why) {
    if (say) printf("%s%s\n", TL_MSG(c, "拒绝：", "REFUSED: "), why);
    else tl_cli_fail("%s: %s", why, code);
    return 1;
  }
  if (has_tube(r->tubes, code)) {
    if (say) printf(c->en ? "OK %s was scanned already (%d scanned)\n" : "OK %s 已扫过（已扫 %d 管）\n", code, n);
    return 0;
  }
  cJSON_AddItemToArray(r->tubes, cJSON_CreateString(code));
  if (say) printf(c->en ? "OK %s (%d scanned)\n" : "OK %s（已扫 %d 管）\n", code, n + 1);
  return 0;
}

static int on_line(void *ud, char *line) {
  receive_t *r = ud;
  r->prompt_shown = 0;
  if (line[0] == '\0') return 1; /* an empty line ends the box */
  (void)scan_tube(r, line, !r->c->json);
  fflush(stdout);
  return 0;
}

static void on_idle(void *ud) {
  receive_t *r = ud;
  if (!r->tty || r->c->json || r->prompt_shown) return;
  printf(r->c->en ? "[%s · %d tubes · empty line ends] > " : "[%s · 已扫 %d 管 · 空行结束] > ", r->box,
         cJSON_GetArraySize(r->tubes));
  fflush(stdout);
  r->prompt_shown = 1;
}

/* Prints a list as "N: a b c" ("-" when empty). */
static void list_row(tl_table_t *t, const char *label, const cJSON *arr) {
  tl_buf_t b;
  tl_buf_init(&b);
  int n = cJSON_GetArraySize(arr), rc = tl_buf_appendf(&b, "%d", n);
  const cJSON *x;
  int first = 1;
  cJSON_ArrayForEach(x, arr) {
    if (cJSON_IsString(x) && rc == 0) rc = tl_buf_appendf(&b, "%s%s", first ? ": " : " ", x->valuestring);
    first = 0;
  }
  tl_table_row(t, label, tl_buf_cstr(&b));
  tl_buf_dispose(&b);
}

/* The event's fate as JSON fields into o. */
static void add_outcome(cJSON *o, const tl_jentry_t *e, int waiting, const char *error) {
  cJSON_AddStringToObject(o, "id", e->id);
  cJSON_AddStringToObject(o, "status", state_names[e->state]);
  if (e->code[0]) cJSON_AddStringToObject(o, "code", e->code);
  cJSON_AddNumberToObject(o, "waiting", waiting);
  if (waiting && error[0]) cJSON_AddStringToObject(o, "error", error);
}

static int cmd_receive(tl_cli_t *c, int argc, char **argv) {
  tl_jopts_t o = {.journal = NULL, .wait_s = 10};
  const char *box = NULL;
  receive_t r = {.c = c, .tubes = cJSON_CreateArray(), .tty = isatty(0)};
  int given = 0, rc = 0;
  for (int i = 1; i < argc; i++) {
    int k = tl_jopts_parse(&o, &i, argc, argv);
    if (k < 0) goto usage;
    if (k) continue;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      help(c, stdout);
      cJSON_Delete(r.tubes);
      return 0;
    }
    if (argv[i][0] == '-') {
      tl_cli_fail("%s: %s", TL_MSG(c, "未知参数", "unknown argument"), argv[i]);
      goto usage;
    }
    if (box == NULL) {
      box = argv[i];
      continue;
    }
    given = 1;
    if (scan_tube(&r, argv[i], 0) != 0) {
      cJSON_Delete(r.tubes);
      return 1;
    }
  }
  if (box == NULL || !tl_valid_barcode(box, strlen(box))) {
    tl_cli_fail("%s", TL_MSG(c, "receive 需要转运箱条码", "receive needs a box code"));
    goto usage;
  }
  r.box = box;
  tl_journal_t j;
  tl_jsend_t s;
  if (tl_jsession_open(c, &o, 1, &j, &s) != 0) {
    cJSON_Delete(r.tubes);
    return 1;
  }
  r.s = &s;
  r.j = &j;
  if (!given) {
    if (!c->json)
      fprintf(stderr, c->en ? "box %s: scan the tubes, one per line; an empty line ends\n"
                            : "转运箱 %s：逐个扫描箱中的采样管，空行结束\n",
              box);
    tl_jsend_read_lines(&s, on_line, on_idle, &r);
    if (r.prompt_shown) putchar('\n');
  }
  int n = cJSON_GetArraySize(r.tubes), idx = -1;
  if (n == 0) {
    rc = tl_cli_fail("%s", TL_MSG(c, "没有扫到采样管：未记录收样", "no tube scanned: nothing recorded"));
    goto done;
  }
  cJSON *ev = tl_journal_event_new("box.receive");
  if (ev) {
    cJSON_AddStringToObject(ev, "box", box);
    cJSON_AddItemToObject(ev, "tubes", cJSON_Duplicate(r.tubes, 1));
  }
  int arc = ev ? tl_journal_append(&j, ev, &idx) : TL_ENOMEM;
  cJSON_Delete(ev);
  if (arc != 0) {
    rc = tl_cli_fail("%s", TL_MSG(c, "无法写入离线日志，未记录", "the journal cannot be written: not recorded"));
    goto done;
  }
  tl_jsend_flush(&s, o.wait_s * 1000);
  const tl_jentry_t *e = &j.entries[idx];
  cJSON *answer = NULL;
  if (e->state == TL_JE_ACCEPTED || e->state == TL_JE_DUPLICATE) {
    tl_buf_t path;
    tl_buf_init(&path);
    if (tl_buf_appendf(&path, "/v1/boxes/") == 0 && tl_cli_urlenc(&path, box) == 0)
      answer = tl_cli_call_json(c, "GET", tl_buf_cstr(&path), NULL); /* prints why on failure */
    tl_buf_dispose(&path);
  }
  if (c->json) {
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "box", box);
    cJSON_AddItemToObject(out, "scanned", cJSON_Duplicate(r.tubes, 1));
    add_outcome(out, e, j.waiting, s.error);
    static const char *const keys[] = {"state", "manifest", "received", "missing", "unexpected"};
    for (size_t k = 0; answer && k < sizeof keys / sizeof keys[0]; k++) {
      const cJSON *v = cJSON_GetObjectItemCaseSensitive(answer, keys[k]);
      if (v) cJSON_AddItemToObject(out, keys[k], cJSON_Duplicate(v, 1));
    }
    char *txt = cJSON_PrintUnformatted(out);
    if (txt) puts(txt);
    free(txt);
    cJSON_Delete(out);
  } else {
    char outcome[200], scanned[16];
    snprintf(scanned, sizeof scanned, "%d", n);
    tl_table_t t;
    tl_table_init(&t, 2);
    tl_table_row(&t, TL_MSG(c, "转运箱", "box"), box);
    tl_table_row(&t, TL_MSG(c, "收样", "receipt"), tl_journal_outcome(c, e, outcome, sizeof outcome));
    tl_table_row(&t, TL_MSG(c, "扫到", "scanned"), scanned);
    if (answer) {
      list_row(&t, TL_MSG(c, "清单", "manifest"), cJSON_GetObjectItemCaseSensitive(answer, "manifest"));
      list_row(&t, TL_MSG(c, "缺失", "missing"), cJSON_GetObjectItemCaseSensitive(answer, "missing"));
      list_row(&t, TL_MSG(c, "多出", "unexpected"), cJSON_GetObjectItemCaseSensitive(answer, "unexpected"));
    }
    tl_table_print(&t);
    tl_table_dispose(&t);
    if (e->state == TL_JE_UNSENT || e->state == TL_JE_INFLIGHT)
      printf(c->en ? "not sent yet (%s): kept in the journal; missing and unexpected tubes show once it is sent\n"
                   : "尚未上传（%s）：已保存在离线日志中；上传后才能核对缺失和多出的管\n",
             s.error[0] ? s.error : TL_MSG(c, "未连接", "not connected"));
  }
  fflush(stdout);
  cJSON_Delete(answer);
  if (e->state == TL_JE_REJECTED)
    rc = tl_cli_fail("%s: %s (%s)", TL_MSG(c, "收样被服务器拒绝", "the receipt was refused"),
                     tl_journal_code_text(c, e->code), e->code);
  else if (s.fatal)
    rc = tl_cli_fail("%s: %s", TL_MSG(c, "上传已停止", "uploading stopped"), s.error);
done:
  tl_jsession_close(&j, &s);
  cJSON_Delete(r.tubes);
  return rc;
usage:
  cJSON_Delete(r.tubes);
  help(c, stderr);
  return 2;
}

static int cmd_reject(tl_cli_t *c, int argc, char **argv) {
  tl_jopts_t o = {.journal = NULL, .wait_s = 10};
  const char *tube = NULL, *reason = NULL, *v;
  for (int i = 1; i < argc; i++) {
    int k = tl_jopts_parse(&o, &i, argc, argv);
    if (k < 0) goto usage;
    if (k) continue;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      help(c, stdout);
      return 0;
    }
    if ((v = tl_jarg(&i, argc, argv, "--reason")) != NULL) reason = v;
    else if (argv[i][0] != '-' && tube == NULL) tube = argv[i];
    else {
      tl_cli_fail("%s: %s", TL_MSG(c, "未知参数", "unknown argument"), argv[i]);
      goto usage;
    }
  }
  if (tube == NULL || !tl_valid_barcode(tube, strlen(tube))) {
    tl_cli_fail("%s", TL_MSG(c, "reject 需要采样管条码", "reject needs a tube code"));
    goto usage;
  }
  if (reason == NULL || tl_reason_parse(reason) < 0) {
    tl_cli_fail("%s", TL_MSG(c, "--reason 应为 leak、unlabeled、insufficient 或 other",
                             "--reason must be leak, unlabeled, insufficient or other"));
    goto usage;
  }
  tl_journal_t j;
  tl_jsend_t s;
  if (tl_jsession_open(c, &o, 1, &j, &s) != 0) return 1;
  int idx = -1, rc = 0;
  cJSON *ev = tl_journal_event_new("tube.reject");
  if (ev) {
    cJSON_AddStringToObject(ev, "tube", tube);
    cJSON_AddStringToObject(ev, "reason", reason);
  }
  int arc = ev ? tl_journal_append(&j, ev, &idx) : TL_ENOMEM;
  cJSON_Delete(ev);
  if (arc != 0) {
    rc = tl_cli_fail("%s", TL_MSG(c, "无法写入离线日志，未记录", "the journal cannot be written: not recorded"));
    tl_jsession_close(&j, &s);
    return rc;
  }
  tl_jsend_flush(&s, o.wait_s * 1000);
  const tl_jentry_t *e = &j.entries[idx];
  if (c->json) {
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "tube", tube);
    cJSON_AddStringToObject(out, "reason", reason);
    add_outcome(out, e, j.waiting, s.error);
    char *txt = cJSON_PrintUnformatted(out);
    if (txt) puts(txt);
    free(txt);
    cJSON_Delete(out);
  } else {
    char outcome[200];
    printf(c->en ? "reject %s (%s): %s\n" : "拒收 %s（%s）：%s\n", tube, reason, tl_journal_outcome(c, e, outcome, sizeof outcome));
    if (e->state == TL_JE_UNSENT || e->state == TL_JE_INFLIGHT)
      printf(c->en ? "not sent yet (%s): kept in the journal\n" : "尚未上传（%s）：已保存在离线日志中\n",
             s.error[0] ? s.error : TL_MSG(c, "未连接", "not connected"));
  }
  fflush(stdout);
  if (e->state == TL_JE_REJECTED)
    rc = tl_cli_fail("%s: %s (%s)", TL_MSG(c, "拒收被服务器拒绝", "the rejection was refused"),
                     tl_journal_code_text(c, e->code), e->code);
  else if (s.fatal)
    rc = tl_cli_fail("%s: %s", TL_MSG(c, "上传已停止", "uploading stopped"), s.error);
  tl_jsession_close(&j, &s);
  return rc;
usage:
  help(c, stderr);
  return 2;
}

int tl_cmd_lab(tl_cli_t *c, int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
    help(c, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "receive") == 0) return cmd_receive(c, argc - 1, argv + 1);
  if (strcmp(argv[1], "reject") == 0) return cmd_reject(c, argc - 1, argv + 1);
  if (strcmp(argv[1], "upload") == 0) return tl_cmd_lab_upload(c, argc - 1, argv + 1);
  tl_cli_fail("%s: %s", TL_MSG(c, "未知子命令", "unknown subcommand"), argv[1]);
  help(c, stderr);
  return 2;
}
