/* tl_stream_t: one accepted TCP connection, optionally wrapped in TLS, as a plaintext stream.
 *
 * The caller owns the tl_stream_t memory (embed it) and must not free it before close_cb.
 * Reads arrive as plaintext through read_cb; tl_stream_write() copies its bytes, so the
 * caller's buffer is free on return. write_queued counts bytes handed to the kernel queue and
 * not yet written: callers pause reading while it is large (a slow reader must not make us
 * buffer without bound) and get drain_cb when it falls to zero.
 *
 * Callbacks: read_cb(data) for plaintext; error_cb(UV_EOF) once when the peer has finished
 * sending (writing still works, so a half-closed client gets its answer); error_cb(code) once
 * for a socket error or a TLS failure, after which only end/close are allowed; close_cb after tl_stream_close() or
 * tl_stream_end() finished. No callback fires after close_cb. */
#ifndef TL_NET_STREAM_H
#define TL_NET_STREAM_H

#include "base/buf.h"
#include "base/err.h"
#include "net/tls.h"

#include <uv.h>

typedef struct tl_stream_s tl_stream_t;
typedef void (*tl_stream_read_cb)(tl_stream_t *s, const char *data, size_t len);
typedef void (*tl_stream_error_cb)(tl_stream_t *s, int code);
typedef void (*tl_stream_drain_cb)(tl_stream_t *s);
typedef void (*tl_stream_close_cb)(tl_stream_t *s);

typedef enum {
  TL_STREAM_OPEN = 0,  /* reading and writing */
  TL_STREAM_ENDING,    /* flushing queued writes, then shutdown + close */
  TL_STREAM_CLOSING,   /* uv_close issued, waiting for its callback */
  TL_STREAM_CLOSED     /* close_cb delivered */
} tl_stream_state_t;

struct tl_stream_s {
  uv_tcp_t tcp;
  uv_shutdown_t shutdown_req;
  tl_stream_state_t state;
  int use_tls;
  tl_tls_t tls;
  tl_buf_t scratch;     /* TLS: plaintext out of one read / ciphertext for one write */
  size_t write_queued;  /* bytes in uv_write requests not yet completed */
  int reading;          /* uv_read_start is active */
  int failed;           /* error_cb was delivered for an error: no more writes */
  int eof;              /* the peer sent EOF / close_notify: no more reads, writes still go */
  void *data;           /* the owner's pointer */
  tl_stream_read_cb read_cb;
  tl_stream_error_cb error_cb;
  tl_stream_drain_cb drain_cb;
  tl_stream_close_cb close_cb;
};

/* Accepts one pending connection from server into s (tls_ctx NULL = plain) and starts
 * reading. On error returns it; if s->state is then TL_STREAM_CLOSED the handle never
 * existed and s may be freed at once, otherwise close_cb will fire. */
TL_WUR int tl_stream_accept(tl_stream_t *s, uv_stream_t *server, tl_tls_ctx_t *tls_ctx);

TL_WUR int tl_stream_write(tl_stream_t *s, const char *data, size_t len);
void tl_stream_pause(tl_stream_t *s);
void tl_stream_resume(tl_stream_t *s);

/* Graceful end: TLS close_notify, flush queued writes, TCP shutdown, close. */
void tl_stream_end(tl_stream_t *s);
/* Immediate close; queued writes are dropped. */
void tl_stream_close(tl_stream_t *s);

#endif
