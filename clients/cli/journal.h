/* The offline journal of the field commands (scan, courier, lab, sync) and its sender.
 *
 * A sampling point, a courier or a lab is often offline, so every scan becomes an event (a
 * fresh UUID: the server's idempotency key) that is appended to a local journal file and
 * fsync'ed before the operator sees OK. A sender uploads the events not yet acknowledged, in
 * journal order, at most 100 per POST /v1/events, retrying with exponential backoff, and
 * appends the server's answer for each event. Nothing is ever edited in place:
 *
 *   tubeloop-journal 1                                   first line: what the file is
 *   event {"id":"…","type":"sample.add",…} #1a2b3c4d     an event exactly as it is sent
 *   ack <id> accepted|duplicate|rejected <code|-> #…     the server's answer to it
 *   undo <id> #…                                         taken back before it was sent
 *   capacity <round> <n> #…                              a round's pool size, learned
 *
 * "#" and 8 hex digits end every record: FNV-1a 32 of the bytes before " #". A last line
 * without its newline (torn by a crash mid-write) is cut off when the journal is opened;
 * a line whose check fails is skipped. An event is resent with the same id until an answer
 * is recorded, and the server answers "duplicate" for an id it applied before, so killing the
 * process at any moment loses no scan and applies none twice. Rejected events are final.
 *
 * The journal holds personal data (the persons of sample.add): the file is created 0600 in
 * a 0700 folder. One process at a time owns a journal (flock); a second one is refused.
 *
 * The sender runs in the caller's thread: curl's multi interface, polled together with
 * standard input, so a command keeps reading scans while an upload is on its way. */
#ifndef TL_CLI_JOURNAL_H
#define TL_CLI_JOURNAL_H

#include "cli.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <sys/types.h>

#define TL_JOURNAL_BATCH 100 /* events per POST */

typedef enum {
  TL_JE_UNSENT = 0, /* recorded, no answer yet */
  TL_JE_INFLIGHT,   /* in the request on its way */
  TL_JE_ACCEPTED,   /* the server applied it */
  TL_JE_DUPLICATE,  /* the server had applied this id before (a resend): nothing new */
  TL_JE_REJECTED,   /* the server refused it (code says why); final, never resent */
  TL_JE_UNDONE      /* taken back by the operator before it was sent; never sent */
} tl_jstate_t;

typedef struct {
  char id[37];       /* lower-case UUID */
  char type[16];     /* event type, "tube.open" … */
  char *json;        /* owned: the event as recorded, resent byte for byte */
  tl_jstate_t state;
  char code[40];     /* the rejection code; "" otherwise */
  int64_t added_ms;  /* monotonic time it was recorded by this process; 0 when loaded */
} tl_jentry_t;

typedef struct {
  char round[33];
  int capacity;
} tl_jcap_t;

typedef struct {
  int fd;              /* -1: closed */
  char *path;          /* owned */
  off_t size;          /* bytes of complete records in the file */
  tl_jentry_t *entries; /* owned, journal order */
  int n, cap;
  int waiting;         /* entries UNSENT or INFLIGHT */
  int skipped;         /* damaged lines ignored when opened */
  tl_jcap_t *caps;     /* owned: learned pool sizes */
  int ncaps, capcaps;
} tl_journal_t;

/* The default journal of a server and token: $XDG_STATE_HOME/tubeloop/ (else
 * ~/.local/state/tubeloop/), journal-<16 hex of SHA-256(url "\n" token)>.log: one file per
 * server and identity, and never the token itself. Creates the folder (0700). Returns 0, or
 * TL_EIO when there is no home folder or it cannot be created. */
TL_WUR int tl_journal_default_path(const char *url, const char *token, char *out, size_t outlen);

/* Opens (create: or creates) and locks the journal and reads it. err gets a sentence in the
 * CLI's language. Returns 0, TL_EBUSY (another process holds it), TL_EINVAL (not a journal),
 * TL_EIO or TL_ENOMEM. On error j is closed. */
TL_WUR int tl_journal_open(tl_journal_t *j, const tl_cli_t *c, const char *path, int create, char *err,
                    size_t errlen);
void tl_journal_close(tl_journal_t *j);

/* A new event {"id": new UUID, "type": type, "at": now with the local offset}; the caller
 * adds the fields, then appends it. Caller frees. NULL when out of memory. */
cJSON *tl_journal_event_new(const char *type);

/* Writes the event as an `event` record and fsyncs. On success *index (if not NULL) is its
 * entry. Returns 0, TL_EIO (nothing recorded: the file is cut back) or TL_ENOMEM. */
TL_WUR int tl_journal_append(tl_journal_t *j, const cJSON *event, int *index);

/* Takes back entry index if nothing was sent of it: an `undo` record, fsync'ed. Returns 0,
 * TL_EBUSY (on its way or answered already) or TL_EIO. */
TL_WUR int tl_journal_undo(tl_journal_t *j, int index);

/* Records a round's pool size (a `capacity` record) / reads it (0: unknown). */
TL_WUR int tl_journal_set_capacity(tl_journal_t *j, const char *round, int capacity);
int tl_journal_capacity(const tl_journal_t *j, const char *round);

/* The operator's words for a server refusal code (or a state), in the CLI's language. */
const char *tl_journal_code_text(const tl_cli_t *c, const char *code);
/* One short phrase for where an entry stands: accepted, duplicate, refused: …, waiting. */
const char *tl_journal_outcome(const tl_cli_t *c, const tl_jentry_t *e, char *buf, size_t buflen);

/* The tube or box an entry is about ("" if none), into buf. */
const char *tl_journal_subject(const tl_jentry_t *e, char *buf, size_t buflen);

/* ---- the sender ---------------------------------------------------------------------- */

typedef struct tl_jsend_s tl_jsend_t;
/* After an answer was recorded for entry index (any status). */
typedef void (*tl_jsend_ack_cb)(void *ud, int index);
/* When the sender goes online (1) or offline (0); error says why when offline. */
typedef void (*tl_jsend_link_cb)(void *ud, int online, const char *error);
/* The answer to a tl_jsend_get(): status 0 when no answer came (then json is NULL). */
typedef void (*tl_jsend_get_cb)(void *ud, long status, const cJSON *json);

typedef enum {
  TL_JSEND_IDLE = 0, /* no request on its way */
  TL_JSEND_POSTING,  /* a batch of events (POST /v1/events) */
  TL_JSEND_GETTING   /* the queued GET */
} tl_jsend_busy_t;

struct tl_jsend_s {
  tl_cli_t *cli;           /* borrowed */
  tl_journal_t *j;         /* borrowed */
  void *multi, *easy;      /* CURLM, CURL: one connection, kept alive */
  void *hdrs;              /* struct curl_slist */
  tl_buf_t body, answer;
  tl_jsend_busy_t busy;
  int batch[TL_JOURNAL_BATCH]; /* entries in the POST on its way */
  int nbatch;
  int batch_max;           /* events per POST, 1..TL_JOURNAL_BATCH (sync --batch) */
  int from;                /* entries before it all have an answer or were taken back */
  int64_t next_try_ms;     /* monotonic: no request before (backoff) */
  int backoff_ms;          /* the next wait after a failure; 0 after a success */
  int64_t hold_ms;         /* an event is sent once it is this old (time for /undo) */
  int online;              /* -1 not tried yet, 0 the last try failed, 1 it worked */
  int fatal;               /* a refusal that retrying cannot fix (bad token): stopped */
  char error[256];         /* why the last try failed */
  long accepted, duplicate, rejected; /* answers recorded by this process */
  tl_jsend_ack_cb on_ack;
  tl_jsend_link_cb on_link;
  void *ud;
  char get_path[300];      /* a queued GET ("" none) */
  tl_jsend_get_cb on_get;
  void *get_ud;
};

/* Binds a sender to a CLI (its URL, token, CA) and an open journal. Returns 0 or TL_ENOMEM. */
TL_WUR int tl_jsend_init(tl_jsend_t *s, tl_cli_t *c, tl_journal_t *j);
void tl_jsend_dispose(tl_jsend_t *s);

/* Queues one GET (sent when no POST is on its way, once; no retry); cb runs with the answer.
 * Returns 0, or TL_EBUSY when a GET is already queued. */
int tl_jsend_get(tl_jsend_t *s, const char *path, tl_jsend_get_cb cb, void *ud);

/* One turn of the sender: starts a request when one is due, waits up to max_wait_ms for
 * network activity or for fd (when >= 0) to become readable, and handles finished requests
 * (callbacks run here). Returns 1 when fd is readable (or at end of file), else 0. */
int tl_jsend_step(tl_jsend_t *s, int fd, int max_wait_ms);

/* Sends until nothing waits and no GET is queued, the sender stopped (fatal), or
 * timeout_ms passed; the hold is ignored. Returns the number of events still waiting. */
int tl_jsend_flush(tl_jsend_t *s, int timeout_ms);

/* Reads standard input line by line while the sender works: line_cb gets each line without
 * its newline (surrounding blanks trimmed) and returns non-zero to stop; idle_cb (may be NULL)
 * runs after every turn (to redraw a prompt). Returns 0 at end of input, 1 when line_cb
 * stopped. */
int tl_jsend_read_lines(tl_jsend_t *s, int (*line_cb)(void *ud, char *line),
                        void (*idle_cb)(void *ud), void *ud);

/* ---- shared by the field commands ------------------------------------------------------ */

typedef struct {
  const char *journal;  /* --journal FILE, or NULL for the default */
  int wait_s;           /* --wait SECONDS: how long to keep sending at the end */
} tl_jopts_t;

/* The value of option `name` at argv[*i] ("--name V" or "--name=V"; *i moves past it), or
 * NULL when argv[*i] is another argument. */
const char *tl_jarg(int *i, int argc, char **argv, const char *name);
/* Consumes --journal / --wait at argv[*i]: 1 consumed, 0 not ours, -1 bad value (printed). */
int tl_jopts_parse(tl_jopts_t *o, int *i, int argc, char **argv);
/* Needs the server settings, resolves the journal's path, opens it and binds a sender.
 * Returns 0; 1 on failure, after printing the reason; -1 (nothing printed) when create is 0
 * and there is no journal yet. Nothing to close unless it returned 0. */
int tl_jsession_open(tl_cli_t *c, const tl_jopts_t *o, int create, tl_journal_t *j, tl_jsend_t *s);
void tl_jsession_close(tl_journal_t *j, tl_jsend_t *s);

/* Monotonic milliseconds. */
int64_t tl_jnow_ms(void);

#endif
