/* The TCP(+TLS) stream of stream.h. Reads land in a buffer from the loop's allocator, go
 * through the TLS engine when there is one, and reach the owner as plaintext. */
#include "net/stream.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  uv_write_t req;
  size_t len;
  char data[]; /* the bytes being written, owned by this request */
} write_req_t;

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  /* One 64 KiB buffer per read: big enough for a TLS record burst, small enough not to
   * matter for 10k idle connections (it is freed after each read). */
  buf->base = malloc(65536);
  buf->len = buf->base ? 65536 : 0;
}

static void on_closed(uv_handle_t *h) {
  tl_stream_t *s = h->data;
  if (s->use_tls) tl_tls_dispose(&s->tls);
  tl_buf_dispose(&s->scratch);
  s->state = TL_STREAM_CLOSED;
  if (s->close_cb) s->close_cb(s);
}

void tl_stream_close(tl_stream_t *s) {
  if (s->state == TL_STREAM_CLOSING || s->state == TL_STREAM_CLOSED) return;
  s->state = TL_STREAM_CLOSING;
  s->reading = 0;
  uv_close((uv_handle_t *)&s->tcp, on_closed);
}

static void fail(tl_stream_t *s, int code) {
  if (s->failed) return;
  s->failed = 1;
  if (s->reading) {
    uv_read_stop((uv_stream_t *)&s->tcp);
    s->reading = 0;
  }
  if (s->error_cb) s->error_cb(s, code);
}

/* The peer will send no more (EOF or TLS close_notify); we may still answer. */
static void peer_done(tl_stream_t *s) {
  if (s->eof || s->failed) return;
  s->eof = 1;
  if (s->reading) {
    uv_read_stop((uv_stream_t *)&s->tcp);
    s->reading = 0;
  }
  if (s->error_cb) s->error_cb(s, UV_EOF);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  tl_stream_close(req->data);
}

static void maybe_finish_end(tl_stream_t *s) {
  if (s->state != TL_STREAM_ENDING || s->write_queued > 0) return;
  s->shutdown_req.data = s;
  if (uv_shutdown(&s->shutdown_req, (uv_stream_t *)&s->tcp, on_shutdown) != 0)
    tl_stream_close(s);
}

static void on_written(uv_write_t *req, int status) {
  write_req_t *w = (write_req_t *)req;
  tl_stream_t *s = req->handle->data;
  s->write_queued -= w->len;
  free(w);
  if (s->state == TL_STREAM_CLOSING || s->state == TL_STREAM_CLOSED) return;
  if (status < 0) {
    fail(s, status);
    return;
  }
  if (s->state == TL_STREAM_ENDING) {
    maybe_finish_end(s);
    return;
  }
  if (s->write_queued == 0 && s->drain_cb) s->drain_cb(s);
}

static int write_raw(tl_stream_t *s, const char *data, size_t len) {
  if (len == 0) return 0;
  write_req_t *w = malloc(sizeof *w + len);
  if (w == NULL) return TL_ENOMEM;
  w->len = len;
  memcpy(w->data, data, len);
  uv_buf_t buf = uv_buf_init(w->data, (unsigned)len);
  int rc = uv_write(&w->req, (uv_stream_t *)&s->tcp, &buf, 1, on_written);
  if (rc != 0) {
    free(w);
    return rc;
  }
  s->write_queued += len;
  return 0;
}

static int flush_tls(tl_stream_t *s) {
  tl_buf_reset(&s->scratch);
  int rc = tl_tls_take_output(&s->tls, &s->scratch);
  if (rc == 0) rc = write_raw(s, s->scratch.data, s->scratch.len);
  tl_buf_reset(&s->scratch);
  return rc;
}

int tl_stream_write(tl_stream_t *s, const char *data, size_t len) {
  if (s->state != TL_STREAM_OPEN || s->failed) return TL_ECLOSED;
  if (!s->use_tls) return write_raw(s, data, len);
  int rc = tl_tls_write(&s->tls, data, len);
  if (rc != 0) return rc;
  return flush_tls(s);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  tl_stream_t *s = stream->data;
  if (nread < 0) {
    free(buf->base);
    if (nread == UV_EOF) {
      peer_done(s);
      return;
    }
    fail(s, (int)nread);
    return;
  }
  if (nread == 0 || s->state != TL_STREAM_OPEN) {
    free(buf->base);
    return;
  }
  if (!s->use_tls) {
    s->read_cb(s, buf->base, (size_t)nread);
    free(buf->base);
    return;
  }
  tl_buf_reset(&s->scratch);
  int rc = tl_tls_feed(&s->tls, buf->base, (size_t)nread, &s->scratch);
  free(buf->base);
  /* Handshake messages (or an alert) may be waiting to go out. */
  tl_buf_t out;
  tl_buf_init(&out);
  if (tl_tls_take_output(&s->tls, &out) == 0 && out.len > 0 && write_raw(s, out.data, out.len) != 0)
    rc = rc ? rc : TL_ECLOSED;
  tl_buf_dispose(&out);
  if (s->scratch.len > 0 && s->state == TL_STREAM_OPEN) {
    /* The read_cb may write, which reuses scratch: hand over a private copy. */
    size_t n;
    char *plain = tl_buf_steal(&s->scratch, &n);
    s->read_cb(s, plain, n);
    free(plain);
  }
  if (rc == TL_ECLOSED && s->state == TL_STREAM_OPEN)
    peer_done(s);
  else if (rc != 0 && s->state == TL_STREAM_OPEN)
    fail(s, rc);
}

int tl_stream_accept(tl_stream_t *s, uv_stream_t *server, tl_tls_ctx_t *tls_ctx) {
  s->state = TL_STREAM_CLOSED; /* until the handle exists */
  s->use_tls = tls_ctx != NULL;
  s->write_queued = 0;
  s->reading = 0;
  s->failed = 0;
  s->eof = 0;
  tl_buf_init(&s->scratch);
  int rc = uv_tcp_init(server->loop, &s->tcp);
  if (rc != 0) return rc;
  s->state = TL_STREAM_OPEN;
  s->tcp.data = s;
  if (s->use_tls) {
    rc = tl_tls_init(&s->tls, tls_ctx);
    if (rc != 0) {
      s->use_tls = 0;
      tl_stream_close(s);
      return rc;
    }
  }
  rc = uv_accept(server, (uv_stream_t *)&s->tcp);
  if (rc == 0) {
    uv_tcp_nodelay(&s->tcp, 1);
    rc = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
  }
  if (rc != 0) {
    tl_stream_close(s);
    return rc;
  }
  s->reading = 1;
  return 0;
}

void tl_stream_pause(tl_stream_t *s) {
  if (!s->reading) return;
  uv_read_stop((uv_stream_t *)&s->tcp);
  s->reading = 0;
}

void tl_stream_resume(tl_stream_t *s) {
  if (s->reading || s->failed || s->eof || s->state != TL_STREAM_OPEN) return;
  if (uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read) == 0) s->reading = 1;
}

void tl_stream_end(tl_stream_t *s) {
  if (s->state != TL_STREAM_OPEN) return;
  tl_stream_pause(s);
  if (s->use_tls && !s->failed) {
    tl_tls_shutdown(&s->tls);
    if (flush_tls(s) != 0) {
      tl_stream_close(s);
      return;
    }
  }
  if (s->failed) {
    tl_stream_close(s);
    return;
  }
  s->state = TL_STREAM_ENDING;
  maybe_finish_end(s);
}
