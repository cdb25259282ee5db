/* tubeloop courier pickup|deliver: the courier's hand-overs (box.pickup, box.deliver --lab).
 *
 * Boxes come as arguments or, without any, one scan per line from a terminal or a pipe.
 * Like every field command the events go through the journal (journal.h): recorded and
 * fsync'ed first, then sent; what cannot be sent now waits for the next command or
 * `tubeloop sync`. At the end a table says what the server answered for each box. */
#include "journal.h"

#include "domain/validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_BOXES 1000

typedef struct {
  tl_cli_t *c;
  tl_journal_t j;
  tl_jsend_t s;
  const char *type;    /* box.pickup or box.deliver */
  const char *lab;     /* box.deliver: the lab handed to */
  int idx[MAX_BOXES];  /* the journal entries of this run */
  int n;
  int tty, prompt_shown;
} courier_t;

static void help(const tl_cli_t *c, FILE *to) {
  fputs(TL_MSG(c,
               "用法: tubeloop courier pickup [箱码…] [--journal 文件] [--wait 秒]\n"
               "      tubeloop courier deliver [箱码…] --lab 实验室 [--journal 文件] [--wait 秒]\n"
               "转运员扫码：pickup 取箱（box.pickup），deliver 送达实验室（box.deliver）。\n"
               "不给箱码时从终端或管道逐行读取扫码，直到输入结束（Ctrl-D）或 /quit。\n"
               "先写入离线日志再上传；离线时保存，稍后由任一命令或 tubeloop sync 上传。\n"
               "  --wait 秒   结束时继续上传的最长时间（默认 10）\n"
               "退出码：0 已记录（离线时待发送）；1 参数无效或有箱被服务器拒绝。\n",
               "usage: tubeloop courier pickup [BOX...] [--journal FILE] [--wait S]\n"
               "       tubeloop courier deliver [BOX...] --lab LAB [--journal FILE] [--wait S]\n"
               "The courier's scans: pickup (box.pickup), deliver to a lab (box.deliver).\n"
               "Without BOX, reads one scan per line from a terminal or a pipe until end of input\n"
               "(Ctrl-D) or /quit. Recorded in the journal first, then sent; offline they wait for the\n"
               "next command or tubeloop sync.\n"
               "  --wait S   how long to keep sending at the end (default 10)\n"
               "Exit status: 0 recorded (waiting when offline); 1 bad arguments, or a box refused.\n"),
        to);
}

/* Records the hand-over of one box. Returns 0, or 1 when refused here. */
static int record_box(courier_t *ct, const char *box, int say) {
  const tl_cli_t *c = ct->c;
  char w[64];
  if (!tl_valid_barcode(box, strlen(box))) {
    if (say) printf("%s%s\n", TL_MSG(c, "拒绝：", "REFUSED: "), TL_MSG(c, "不是转运箱条码", "not a box code"));
    else tl_cli_fail("%s: %s", TL_MSG(c, "不是转运箱条码", "not a box code"), box);
    return 1;
  }
  for (int k = 0; k < ct->n; k++) {
    cJSON *o = cJSON_Parse(ct->j.entries[ct->idx[k]].json);
    int same = strcmp(tl_js(o, "box"), box) == 0;
    cJSON_Delete(o);
    if (same) {
      if (say) printf(c->en ? "OK %s was scanned already\n" : "OK %s 已扫过\n", box);
      return 0;
    }
  }
  if (ct->n == MAX_BOXES) {
    tl_cli_fail("%s", TL_MSG(c, "一次最多 1000 箱", "at most 1000 boxes at a time"));
    return 1;
  }
  cJSON *ev = tl_journal_event_new(ct->type);
  if (ev == NULL) return 1;
  cJSON_AddStringToObject(ev, "box", box);
  if (ct->lab) cJSON_AddStringToObject(ev, "lab", ct->lab);
  int rc = tl_journal_append(&ct->j, ev, &ct->idx[ct->n]);
  cJSON_Delete(ev);
  if (rc != 0) {
    tl_cli_fail("%s", TL_MSG(c, "无法写入离线日志，未记录", "the journal cannot be written: not recorded"));
    return 1;
  }
  ct->n++;
  snprintf(w, sizeof w, c->en ? "%d waiting" : "待发送 %d", ct->j.waiting);
  if (say) printf("OK %s %s · %s\n", ct->type, box, w);
  return 0;
}

static int on_line(void *ud, char *line) {
  courier_t *ct = ud;
  ct->prompt_shown = 0;
  if (line[0] == '\0') return 0;
  if (strcmp(line, "/quit") == 0 || strcmp(line, "/q") == 0) return 1;
  if (!ct->c->json) {
    (void)record_box(ct, line, 1);
    fflush(stdout);
  } else if (record_box(ct, line, 0) != 0) {
    return 0;
  }
  return 0;
}

static void on_idle(void *ud) {
  courier_t *ct = ud;
  if (!ct->tty || ct->c->json || ct->prompt_shown) return;
  printf(ct->c->en ? "[%s · %d scanned · %d waiting] > " : "[%s · 已扫 %d · 待发送 %d] > ", ct->type, ct->n,
         ct->j.waiting);
  fflush(stdout);
  ct->prompt_shown = 1;
}

/* The table (or JSON) of what became of each box. Returns the number refused. */
static int report(courier_t *ct) {
  const tl_cli_t *c = ct->c;
  int refused = 0;
  cJSON *arr = c->json ? cJSON_CreateArray() : NULL;
  tl_table_t t;
  tl_table_init(&t, 3);
  tl_table_row(&t, TL_MSG(c, "转运箱", "box"), TL_MSG(c, "事件", "event"), TL_MSG(c, "结果", "result"));
  for (int k = 0; k < ct->n; k++) {
    const tl_jentry_t *e = &ct->j.entries[ct->idx[k]];
    char box[64], out[200];
    tl_journal_subject(e, box, sizeof box);
    refused += e->state == TL_JE_REJECTED;
    if (arr) {
      cJSON *o = cJSON_CreateObject();
      static const char *const names[] = {"waiting", "waiting", "accepted", "duplicate", "rejected", "undone"};
      cJSON_AddStringToObject(o, "box", box);
      cJSON_AddStringToObject(o, "type", e->type);
      cJSON_AddStringToObject(o, "id", e->id);
      cJSON_AddStringToObject(o, "status", names[e->state]);
      if (e->code[0]) cJSON_AddStringToObject(o, "code", e->code);
      cJSON_AddItemToArray(arr, o);
    } else {
      tl_table_row(&t, box, e->type, tl_journal_outcome(c, e, out, sizeof out));
    }
  }
  if (arr) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "events", arr);
    cJSON_AddNumberToObject(root, "waiting", ct->j.waiting);
    if (ct->j.waiting) cJSON_AddStringToObject(root, "error", ct->s.error);
    char *txt = cJSON_PrintUnformatted(root);
    if (txt) puts(txt);
    free(txt);
    cJSON_Delete(root);
  } else if (ct->n) {
    tl_table_print(&t);
    if (ct->j.waiting)
      printf(c->en ? "%d waiting (%s): kept in the journal, sent by the next command or tubeloop sync\n"
                   : "待发送 %d 条（%s）：已保存在离线日志中，由下次命令或 tubeloop sync 上传\n",
             ct->j.waiting, ct->s.error[0] ? ct->s.error : TL_MSG(c, "未连接", "not connected"));
  }
  tl_table_dispose(&t);
  fflush(stdout);
  return refused;
}

int tl_cmd_courier(tl_cli_t *c, int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
    help(c, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const char *type;
  if (strcmp(argv[1], "pickup") == 0) type = "box.pickup";
  else if (strcmp(argv[1], "deliver") == 0) type = "box.deliver";
  else {
    tl_cli_fail("%s: %s", TL_MSG(c, "未知子命令", "unknown subcommand"), argv[1]);
    help(c, stderr);
    return 2;
  }
  tl_jopts_t o = {.journal = NULL, .wait_s = 10};
  const char *lab = NULL, *v;
  char **boxes = calloc((size_t)argc, sizeof *boxes);
  int nboxes = 0;
  if (boxes == NULL) return tl_cli_fail("out of memory");
  for (int i = 2; i < argc; i++) {
    int r = tl_jopts_parse(&o, &i, argc, argv);
    if (r < 0) goto usage;
    if (r) continue;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      help(c, stdout);
      free(boxes);
      return 0;
    }
    if ((v = tl_jarg(&i, argc, argv, "--lab")) != NULL) lab = v;
    else if (argv[i][0] == '-') {
      tl_cli_fail("%s: %s", TL_MSG(c, "未知参数", "unknown argument"), argv[i]);
      goto usage;
    } else boxes[nboxes++] = argv[i];
  }
  if (strcmp(type, "box.deliver") == 0 && (lab == NULL || !tl_valid_code(lab, strlen(lab)))) {
    tl_cli_fail("%s", TL_MSG(c, "deliver 需要 --lab 实验室编码", "deliver needs --lab LAB"));
    goto usage;
  }
  if (strcmp(type, "box.pickup") == 0 && lab) {
    tl_cli_fail("%s", TL_MSG(c, "pickup 不需要 --lab", "pickup takes no --lab"));
    goto usage;
  }
  for (int k = 0; k < nboxes; k++)
    if (!tl_valid_barcode(boxes[k], strlen(boxes[k]))) {
      tl_cli_fail("%s: %s", TL_MSG(c, "不是转运箱条码", "not a box code"), boxes[k]);
      free(boxes);
      return 1;
    }
  courier_t *ct = calloc(1, sizeof *ct);
  if (ct == NULL) {
    free(boxes);
    return tl_cli_fail("out of memory");
  }
  ct->c = c;
  ct->type = type;
  ct->lab = lab;
  ct->tty = isatty(0);
  int rc = tl_jsession_open(c, &o, 1, &ct->j, &ct->s);
  if (rc != 0) {
    free(ct);
    free(boxes);
    return 1;
  }
  rc = 0;
  if (nboxes) {
    for (int k = 0; k < nboxes && rc == 0; k++) rc = record_box(ct, boxes[k], 0);
  } else {
    ct->s.hold_ms = 0;
    tl_jsend_read_lines(&ct->s, on_line, on_idle, ct);
    if (ct->prompt_shown) putchar('\n');
  }
  tl_jsend_flush(&ct->s, o.wait_s * 1000);
  int refused = report(ct);
  if (rc == 0 && ct->s.fatal) rc = tl_cli_fail("%s: %s", TL_MSG(c, "上传已停止", "uploading stopped"), ct->s.error);
  else if (rc == 0 && refused)
    rc = tl_cli_fail(c->en ? "%d boxes refused by the server" : "%d 箱被服务器拒绝", refused);
  tl_jsession_close(&ct->j, &ct->s);
  free(ct);
  free(boxes);
  return rc;
usage:
  free(boxes);
  help(c, stderr);
  return 2;
}
