/* `tubeloopd verify` (chainverify.h). Everything it trusts is the events table, this file's
 * SQL (plain column reads, no function of sql/010_chain.sql) and the keys file. */
#include "db/chainverify.h"

#include "crypto/chain.h"

#include <libpq-fe.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define BATCH "5000"          /* links fetched per round trip */
#define MAX_PRINTED 50        /* finding lines printed per partition (all are counted) */

typedef struct {
  long long seq;
  long long signed_us;
  unsigned char link[32];
  int sig_ok;
  char signed_at[40];
} checkpoint_t;

typedef struct {
  PGconn *pg;
  FILE *out;
  tl_chain_report_t *rep;
  int nkeys;
  unsigned char pub[TL_KEYS_MAX][32];
  char kid[TL_KEYS_MAX][17];
  /* the partition being checked */
  const char *part;
  long long found; /* findings in it */
} verifier_t;

static void finding(verifier_t *v, const char *kind, long long seq, const char *event,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void finding(verifier_t *v, const char *kind, long long seq, const char *event,
                    const char *fmt, ...) {
  v->found++;
  v->rep->findings++;
  if (v->found > MAX_PRINTED) return;
  char reason[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof reason, fmt, ap);
  va_end(ap);
  fprintf(v->out, "  finding kind=%s partition=%s", kind, v->part ? v->part : "-");
  if (seq > 0) fprintf(v->out, " seq=%lld", seq);
  if (event) fprintf(v->out, " event=%s", event);
  fprintf(v->out, " reason=\"%s\"\n", reason);
}

/* Runs a query; NULL (and err filled) unless it returned rows or a command status. */
static PGresult *query(verifier_t *v, const char *sql, int n, const char *const *params,
                       char *err, size_t errlen) {
  PGresult *r = PQexecParams(v->pg, sql, n, NULL, params, NULL, NULL, 0);
  ExecStatusType st = PQresultStatus(r);
  if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) return r;
  const char *msg = PQresultErrorMessage(r);
  snprintf(err, errlen, "query failed: %.*s", (int)strcspn(msg, "\n"), msg);
  PQclear(r);
  return NULL;
}

static const char *val(const PGresult *r, int row, int col) {
  return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* The partition's checkpoints, signatures checked. *out is malloc'ed (caller frees). */
static int load_checkpoints(verifier_t *v, checkpoint_t **out, int *n, char *err, size_t errlen) {
  const char *params[] = {v->part};
  PGresult *r = query(v,
                      "SELECT seq, encode(link, 'hex'),"
                      " (extract(epoch FROM signed_at) * 1000000)::bigint, key_id,"
                      " encode(signature, 'hex'), signed_at::text"
                      " FROM chain_checkpoints WHERE partition = $1 ORDER BY seq",
                      1, params, err, errlen);
  if (r == NULL) return TL_EDB;
  int rows = PQntuples(r);
  checkpoint_t *cps = calloc((size_t)rows + 1, sizeof *cps);
  if (cps == NULL) {
    PQclear(r);
    snprintf(err, errlen, "out of memory");
    return TL_ENOMEM;
  }
  for (int i = 0; i < rows; i++) {
    checkpoint_t *c = &cps[i];
    unsigned char sig[64];
    c->seq = atoll(PQgetvalue(r, i, 0));
    c->signed_us = atoll(PQgetvalue(r, i, 2));
    snprintf(c->signed_at, sizeof c->signed_at, "%s", PQgetvalue(r, i, 5));
    int key = -1;
    for (int k = 0; k < v->nkeys; k++)
      if (strcmp(v->kid[k], PQgetvalue(r, i, 3)) == 0) key = k;
    c->sig_ok = tl_chain_unhex(PQgetvalue(r, i, 1), c->link, 32) == 0 &&
                tl_chain_unhex(PQgetvalue(r, i, 4), sig, 64) == 0 && key >= 0 &&
                tl_chain_verify(v->pub[key], v->part, c->seq, c->link, c->signed_us, sig);
    if (!c->sig_ok)
      finding(v, "bad_signature", c->seq, NULL,
              key < 0 ? "checkpoint signed with an unknown key %s (signed_at %s)"
                      : "checkpoint signature does not verify with key %s (signed_at %s)",
              PQgetvalue(r, i, 3), c->signed_at);
  }
  v->rep->checkpoints += rows;
  PQclear(r);
  *out = cps;
  *n = rows;
  return 0;
}

typedef struct {
  long long expect;       /* the next seq */
  unsigned char prev[32]; /* the last stored link */
  unsigned char chain[32]; /* recomputed from the events only, from link(0) */
  int chain_ok;           /* chain is meaningful (no gap, no vanished event so far) */
  long long links;
  int cpi, ncp;
  checkpoint_t *cps;
  long long cp_ok; /* checkpoints that match */
} walk_t;

/* Compares the checkpoints at seq (all those before seq: they fell into a gap). */
static void check_checkpoints(verifier_t *v, walk_t *w, long long seq) {
  for (; w->cpi < w->ncp && w->cps[w->cpi].seq <= seq; w->cpi++) {
    checkpoint_t *c = &w->cps[w->cpi];
    if (!c->sig_ok) continue; /* reported already; a forged checkpoint proves nothing */
    if (c->seq == seq && w->chain_ok && memcmp(c->link, w->chain, 32) == 0) {
      w->cp_ok++;
    } else if (v->found == 0) {
      finding(v, "rewritten", c->seq, NULL,
              "the chain recomputed from the events differs from the checkpoint signed at %s",
              c->signed_at);
    } else if (v->found < MAX_PRINTED) {
      fprintf(v->out, "  note: checkpoint seq=%lld (signed at %s) does not match: follows from the"
                      " finding(s) above\n", c->seq, c->signed_at);
    }
  }
}

/* One link row: seq, link, event_id, then the TL_CHAIN_NFIELDS event columns. */
static int walk_row(verifier_t *v, walk_t *w, const PGresult *r, int i) {
  long long seq = atoll(PQgetvalue(r, i, 0));
  unsigned char stored[32];
  const char *event = PQgetvalue(r, i, 2);
  if (tl_chain_unhex(PQgetvalue(r, i, 1), stored, 32) != 0) return TL_EINVAL;
  if (seq != w->expect) {
    finding(v, "missing", w->expect, NULL, "links seq %lld..%lld are missing", w->expect, seq - 1);
    w->chain_ok = 0;
  }
  const char *fields[TL_CHAIN_NFIELDS];
  for (int k = 0; k < TL_CHAIN_NFIELDS; k++) fields[k] = val(r, i, 3 + k);
  if (fields[0] == NULL) {
    finding(v, "missing", seq, event, "the linked event is gone from the events table");
    w->chain_ok = 0;
  } else {
    unsigned char local[32];
    if (tl_chain_link(w->prev, v->part, seq, fields, local) != 0) return TL_ENOMEM;
    if (memcmp(local, stored, 32) != 0)
      finding(v, "altered", seq, event, "the stored event does not match its link");
    if (w->chain_ok && tl_chain_link(w->chain, v->part, seq, fields, w->chain) != 0)
      return TL_ENOMEM;
  }
  memcpy(w->prev, stored, 32);
  w->expect = seq + 1;
  w->links++;
  check_checkpoints(v, w, seq);
  return 0;
}

static int verify_partition(verifier_t *v, int explicit_one, char *err, size_t errlen) {
  v->found = 0;
  walk_t w = {.expect = 1, .chain_ok = 1};
  int rc = load_checkpoints(v, &w.cps, &w.ncp, err, errlen);
  if (rc != 0) return rc;
  char after[24] = "0";
  for (;;) {
    const char *params[] = {v->part, after};
    PGresult *r = query(v,
                        "SELECT l.seq, encode(l.link, 'hex'), l.event_id::text, " TL_CHAIN_COLUMNS
                        " FROM chain_links l LEFT JOIN events e ON e.id = l.event_id"
                        " WHERE l.partition = $1 AND l.seq > $2::bigint ORDER BY l.seq"
                        " LIMIT " BATCH,
                        2, params, err, errlen);
    if (r == NULL) {
      free(w.cps);
      return TL_EDB;
    }
    int rows = PQntuples(r);
    for (int i = 0; i < rows && rc == 0; i++) rc = walk_row(v, &w, r, i);
    if (rows > 0) snprintf(after, sizeof after, "%s", PQgetvalue(r, rows - 1, 0));
    PQclear(r);
    if (rc != 0) {
      free(w.cps);
      snprintf(err, errlen, "cannot recompute a link (%s)", tl_strerror(rc));
      return rc;
    }
    if (rows < atoi(BATCH)) break;
  }
  long long last = w.expect - 1;
  /* checkpoints beyond the end: the tail was cut off */
  int beyond = 0;
  const checkpoint_t *top = NULL;
  for (int i = w.cpi; i < w.ncp; i++)
    if (w.cps[i].sig_ok) {
      beyond++;
      top = &w.cps[i];
    }
  if (top)
    finding(v, "truncated", last + 1, NULL,
            "the chain ends at seq %lld but %d signed checkpoint(s) go further, the last at seq"
            " %lld (signed at %s)", last, beyond, top->seq, top->signed_at);

  const char *params[] = {v->part};
  PGresult *h = query(v, "SELECT seq, encode(link, 'hex') FROM chain_heads WHERE partition = $1",
                      1, params, err, errlen);
  if (h == NULL) {
    free(w.cps);
    return TL_EDB;
  }
  long long head = PQntuples(h) ? atoll(PQgetvalue(h, 0, 0)) : 0;
  unsigned char head_link[32] = {0};
  if (PQntuples(h) && tl_chain_unhex(PQgetvalue(h, 0, 1), head_link, 32) != 0) head = -1;
  PQclear(h);
  if (head > last)
    finding(v, "truncated", last + 1, NULL, "the head says seq %lld but the chain ends at seq %lld",
            head, last);
  else if (head == 0 && last > 0)
    finding(v, "missing", last, NULL, "the partition's head row is gone");
  else if (head != last || (last > 0 && memcmp(head_link, w.prev, 32) != 0))
    finding(v, "altered", head, NULL, "the head does not match the last link (seq %lld)", last);
  if (explicit_one && last == 0 && w.ncp == 0 && head == 0)
    finding(v, "missing", 0, NULL, "no such partition");

  v->rep->links += w.links;
  v->rep->partitions++;
  if (v->found == 0)
    fprintf(v->out, "partition %s: ok: %lld links, %lld of %d checkpoints matched%s\n", v->part,
            w.links, w.cp_ok, w.ncp,
            w.ncp == 0 ? " (no checkpoint yet: its links are unsigned)" : "");
  else
    fprintf(v->out, "partition %s: %lld finding(s) in %lld links and %d checkpoints\n", v->part,
            v->found, w.links, w.ncp);
  free(w.cps);
  return 0;
}

/* Every column of events must be one that the encoding covers. */
static int check_columns(verifier_t *v, char *err, size_t errlen) {
  PGresult *r = query(v,
                      "SELECT column_name::text FROM information_schema.columns"
                      " WHERE table_schema = current_schema() AND table_name = 'events'"
                      " ORDER BY ordinal_position",
                      0, NULL, err, errlen);
  if (r == NULL) return TL_EDB;
  static const char known[] = "," TL_CHAIN_COLUMN_NAMES ",";
  for (int i = 0; i < PQntuples(r); i++) {
    char needle[80];
    snprintf(needle, sizeof needle, ",%s,", PQgetvalue(r, i, 0));
    if (strstr(known, needle) == NULL)
      finding(v, "uncovered", 0, NULL,
              "events.%s is not covered by the chain encoding (%s): update lib/crypto/chain.h"
              " and sql tl_chain_canon together",
              PQgetvalue(r, i, 0), TL_CHAIN_TAG);
  }
  PQclear(r);
  return 0;
}

/* Events neither chained nor waiting for the sealer (inserted behind the queue's back, or
 * whose link is gone). */
static int check_unchained(verifier_t *v, char *err, size_t errlen) {
  PGresult *r = query(v,
                      "SELECT count(*) OVER (), e.id::text FROM events e"
                      " WHERE NOT EXISTS (SELECT 1 FROM chain_links l WHERE l.event_id = e.id)"
                      " AND NOT EXISTS (SELECT 1 FROM chain_pending p WHERE p.event_id = e.id)"
                      " LIMIT 20",
                      0, NULL, err, errlen);
  if (r == NULL) return TL_EDB;
  for (int i = 0; i < PQntuples(r); i++)
    finding(v, "unchained", 0, PQgetvalue(r, i, 1),
            "the event is in no chain and not waiting for the sealer (%s such events)",
            PQgetvalue(r, i, 0));
  PQclear(r);
  r = query(v, "SELECT count(*) FROM chain_pending", 0, NULL, err, errlen);
  if (r == NULL) return TL_EDB;
  v->rep->pending = atoll(PQgetvalue(r, 0, 0));
  PQclear(r);
  return 0;
}

static int run(verifier_t *v, const char *partition, char *err, size_t errlen) {
  PGresult *r = query(v, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, err, errlen);
  if (r == NULL) return TL_EDB;
  PQclear(r);
  v->part = NULL;
  v->found = 0;
  int rc = check_columns(v, err, errlen);
  if (rc == 0 && partition == NULL) rc = check_unchained(v, err, errlen);
  if (rc != 0) return rc;
  if (partition) {
    v->part = partition;
    return verify_partition(v, 1, err, errlen);
  }
  /* every partition named anywhere: links (a loose index scan), heads and checkpoints */
  r = query(v,
            "WITH RECURSIVE p(x) AS ("
            "  SELECT min(partition) FROM chain_links"
            "  UNION ALL SELECT (SELECT min(l.partition) FROM chain_links l WHERE l.partition > p.x)"
            "  FROM p WHERE p.x IS NOT NULL)"
            " SELECT x FROM p WHERE x IS NOT NULL UNION SELECT partition FROM chain_heads"
            " UNION SELECT partition FROM chain_checkpoints ORDER BY 1",
            0, NULL, err, errlen);
  if (r == NULL) return TL_EDB;
  for (int i = 0; i < PQntuples(r) && rc == 0; i++) {
    v->part = PQgetvalue(r, i, 0);
    rc = verify_partition(v, 0, err, errlen);
  }
  PQclear(r);
  return rc;
}

int tl_db_chain_verify(const char *conninfo, const tl_keys_t *keys, const char *partition,
                       FILE *out, tl_chain_report_t *rep, char *err, size_t errlen) {
  memset(rep, 0, sizeof *rep);
  verifier_t v = {.out = out, .rep = rep};
  for (int k = 0; k < keys->nsign; k++) {
    if (tl_chain_public_key(keys->sign[k], v.pub[k]) != 0) {
      snprintf(err, errlen, "sign key %d of the keys file is not usable", k + 1);
      return TL_EINVAL;
    }
    tl_chain_key_id(v.pub[k], v.kid[k]);
    fprintf(out, "key %s%s\n", v.kid[k], keys->sign_derived ? " (derived from the hmac key)" : "");
  }
  v.nkeys = keys->nsign;
  const char *const kw[] = {"dbname", "fallback_application_name", NULL};
  const char *const vals[] = {conninfo, "tubeloopd-verify", NULL};
  v.pg = PQconnectdbParams(kw, vals, 1);
  if (v.pg == NULL || PQstatus(v.pg) != CONNECTION_OK) {
    snprintf(err, errlen, "cannot connect to the database: %s",
             v.pg ? strtok(PQerrorMessage(v.pg), "\n") : "out of memory");
    PQfinish(v.pg);
    return TL_EDB;
  }
  int rc = run(&v, partition, err, errlen);
  PQfinish(v.pg);
  if (rc == 0)
    fprintf(out, "summary: %lld partition(s), %lld links, %lld checkpoints, %lld finding(s);"
                 " %lld event(s) waiting for the sealer\n",
            rep->partitions, rep->links, rep->checkpoints, rep->findings, rep->pending);
  return rc;
}
