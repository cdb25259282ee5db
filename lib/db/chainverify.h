/* `tubeloopd verify`: recomputes the custody chains from the stored events (blocking libpq,
 * command-line use only; docs/RELIABILITY.md §9).
 *
 * In one REPEATABLE READ READ ONLY transaction, for each partition (or the one asked for), it
 * streams the chain in seq order, a batch at a time (memory does not grow with the chain), and
 * recomputes every link in C from the event row alone (lib/crypto/chain.h). It checks:
 *   - each stored link against SHA-256(previous stored link || canonical event)  → altered
 *   - seq continuity, and that each linked event still exists                    → missing
 *   - each checkpoint's Ed25519 signature with the keys file's sign keys         → bad_signature
 *   - each checkpoint's (seq, link) against the chain recomputed from the events
 *     from its start, never from stored links                                    → rewritten
 *   - that no checkpoint or head lies beyond the end of the chain                → truncated
 * and, over every partition, that each event is chained or waiting to be         → unchained
 * and that events has no column the encoding does not cover                      → uncovered
 * One line per partition and one per finding go to out. */
#ifndef TL_DB_CHAINVERIFY_H
#define TL_DB_CHAINVERIFY_H

#include "base/err.h"
#include "crypto/keys.h"

#include <stdio.h>

typedef struct {
  long long partitions;
  long long links;       /* links checked */
  long long checkpoints; /* checkpoints checked */
  long long findings;
  long long pending;     /* events committed, waiting for the sealer */
} tl_chain_report_t;

/* partition: NULL for all. Returns 0 when the check ran (findings or not), else an error
 * with a one-line reason in err. */
TL_WUR int tl_db_chain_verify(const char *conninfo, const tl_keys_t *keys, const char *partition,
                              FILE *out, tl_chain_report_t *rep, char *err, size_t errlen);

#endif
