/* Fuzz target: the lab results CSV of `tubeloop lab upload` (clients/cli/lab_upload.h: the
 * CSV reader of input.c and the line checks of docs/CSV.md). Invariants: the check never fails
 * but for memory; the verdict is the same in Chinese and English (same rows, same problem
 * lines); problems are sorted and name real lines; every row that passed holds what the
 * server's validation accepts (barcode, result word, Ct from 0 to 100, RFC 3339 time), rows
 * keep file order after the header, no tube twice; and each row's event carries a version 8
 * UUID that the same row always derives again. */
#include "lab_upload.h"

#include "domain/validate.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Events built per input: enough to reach every shape of row without making long inputs slow. */
#define EVENTS_MAX 64

static void check_event(const tl_lab_file_t *f, const tl_lab_row_t *r) {
  static const char at[] = "2021-10-08T14:03:00+08:00";
  cJSON *e = tl_lab_event(&f->header, r, at, "lab:FUZZ");
  cJSON *again = tl_lab_event(&f->header, r, at, "lab:FUZZ");
  if (e == NULL || again == NULL) abort();
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
  const cJSON *id2 = cJSON_GetObjectItemCaseSensitive(again, "id");
  if (!cJSON_IsString(id) || !cJSON_IsString(id2) || strcmp(id->valuestring, id2->valuestring) != 0) abort();
  if (!tl_valid_uuid(id->valuestring, strlen(id->valuestring)) || id->valuestring[14] != '8') abort();
  const cJSON *tube = cJSON_GetObjectItemCaseSensitive(e, "tube");
  const cJSON *res = cJSON_GetObjectItemCaseSensitive(e, "result");
  if (!cJSON_IsString(tube) || strcmp(tube->valuestring, r->tube) != 0) abort();
  if (!cJSON_IsString(res) || strcmp(res->valuestring, tl_lab_result_name(r->result)) != 0) abort();
  const cJSON *ct = cJSON_GetObjectItemCaseSensitive(e, "ct");
  int n = 0;
  for (int g = 0; g < f->header.ngenes; g++) n += r->has_ct[g];
  if (n != (ct ? cJSON_GetArraySize(ct) : 0)) abort();
  cJSON_Delete(e);
  cJSON_Delete(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  int lines = 1;
  for (size_t i = 0; i < size; i++) lines += data[i] == '\n' || (data[i] == '\r' && (i + 1 == size || data[i + 1] != '\n'));
  tl_lab_file_t zh, en;
  if (tl_lab_file_check(&zh, s, size, 0) != 0 || tl_lab_file_check(&en, s, size, 1) != 0) abort();
  if (zh.nrows != en.nrows || zh.problems.n != en.problems.n) abort();
  for (int i = 0; i < zh.problems.n; i++) {
    const tl_lab_problem_t *p = &zh.problems.v[i];
    if (p->line != en.problems.v[i].line || p->msg == NULL || en.problems.v[i].msg == NULL) abort();
    if (p->line < 1 || p->line > lines || (i > 0 && p->line < zh.problems.v[i - 1].line)) abort();
  }
  for (int i = 0; i < zh.nrows; i++) {
    const tl_lab_row_t *r = &zh.rows[i];
    if (r->line < 2 || r->line > lines || (i > 0 && r->line <= zh.rows[i - 1].line)) abort();
    if (r->line != en.rows[i].line || strcmp(r->tube, en.rows[i].tube) != 0) abort();
    if (!tl_valid_barcode(r->tube, strlen(r->tube)) || tl_lab_result_name(r->result) == NULL) abort();
    if (r->amend != 0 && r->amend != 1) abort();
    int64_t ms;
    if (r->at[0] && tl_time_parse(r->at, strlen(r->at), &ms) != 0) abort();
    for (int g = 0; g < zh.header.ngenes; g++)
      if (r->has_ct[g] && !(r->ct[g] >= 0 && r->ct[g] <= 100)) abort();
    if (i < EVENTS_MAX) check_event(&zh, r);
  }
  /* a good file (no problem) never names a tube twice */
  if (zh.problems.n == 0)
    for (int i = 0; i < zh.nrows && i < EVENTS_MAX; i++)
      for (int j = 0; j < i; j++)
        if (strcmp(zh.rows[i].tube, zh.rows[j].tube) == 0) abort();
  tl_lab_file_dispose(&zh);
  tl_lab_file_dispose(&en);
  return 0;
}
