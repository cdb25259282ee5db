/* The tamper-evident custody log's cryptography (docs/RELIABILITY.md §9): the canonical
 * encoding of an event, the SHA-256 link, and Ed25519-signed checkpoints of a chain's head.
 *
 *   link(0) = 32 zero bytes
 *   link(n) = SHA-256(link(n-1) || canonical(partition, n, event))
 *
 * canonical() is a sequence of fields, each a 4-byte big-endian length and its bytes (SQL
 * NULL: the length 0xFFFFFFFF and no bytes): TL_CHAIN_TAG, the partition, n in decimal, then
 * the TL_CHAIN_NFIELDS event columns as TL_CHAIN_COLUMNS selects them. sql/010_chain.sql
 * (tl_chain_canon) computes the same bytes in the database for the sealer; `tubeloopd verify`
 * recomputes them here, from the events alone.
 *
 * Pure functions on caller memory, OpenSSL only; no I/O. */
#ifndef TL_CRYPTO_CHAIN_H
#define TL_CRYPTO_CHAIN_H

#include "base/err.h"

#include <stddef.h>

#define TL_CHAIN_TAG "tubeloop-chain-v1"
#define TL_CHAIN_CHECKPOINT_TAG "tubeloop-checkpoint-v1"

/* The event columns covered, in order, as SQL over the events row `e` (text values). */
#define TL_CHAIN_NFIELDS 11
#define TL_CHAIN_COLUMNS                                                                      \
  "e.id::text, e.type, (extract(epoch FROM e.at) * 1000000)::bigint::text, e.sender_role, "   \
  "e.sender, (extract(epoch FROM e.received_at) * 1000000)::bigint::text, e.digest, e.tube, " \
  "e.box, e.body::text, e.anomalies::text"
/* The names of every column of events that TL_CHAIN_COLUMNS covers, comma-separated. */
#define TL_CHAIN_COLUMN_NAMES "id,type,at,sender_role,sender,received_at,digest,tube,box,body,anomalies"

/* link(n) from link(n-1) = prev and the event's fields (NUL-terminated text; NULL = SQL NULL).
 * prev and out may be the same buffer. Returns 0 or TL_ENOMEM. */
TL_WUR int tl_chain_link(const unsigned char prev[32], const char *partition, long long seq,
                         const char *const fields[TL_CHAIN_NFIELDS], unsigned char out[32]);

/* The canonical bytes of (partition, seq, fields) into out (at most outlen bytes). Returns
 * their length (which may exceed outlen: then out holds a prefix). For tests and tooling. */
size_t tl_chain_canonical(const char *partition, long long seq,
                          const char *const fields[TL_CHAIN_NFIELDS], unsigned char *out,
                          size_t outlen);

/* The public key of an Ed25519 private key (its 32-byte seed). Returns 0 or TL_EINVAL. */
TL_WUR int tl_chain_public_key(const unsigned char seed[32], unsigned char pub[32]);

/* A key's id: the first 8 bytes of SHA-256(public key), as 16 lowercase hex digits. */
void tl_chain_key_id(const unsigned char pub[32], char out[17]);

/* Ed25519 signature of the checkpoint message
 *   canonical fields: TL_CHAIN_CHECKPOINT_TAG, partition, seq (decimal), link (32 raw bytes),
 *   signed_us (microseconds since the epoch, decimal).
 * Returns 0 or TL_EINVAL. */
TL_WUR int tl_chain_sign(const unsigned char seed[32], const char *partition, long long seq,
                         const unsigned char link[32], long long signed_us, unsigned char sig[64]);

/* 1 when sig is pub's valid signature of that checkpoint, else 0. */
int tl_chain_verify(const unsigned char pub[32], const char *partition, long long seq,
                    const unsigned char link[32], long long signed_us, const unsigned char sig[64]);

/* Hex helpers: n bytes to 2n lowercase digits + NUL; 2n digits to n bytes (0 or TL_EINVAL). */
void tl_chain_hex(const unsigned char *in, size_t n, char *out);
TL_WUR int tl_chain_unhex(const char *in, unsigned char *out, size_t n);

#endif
