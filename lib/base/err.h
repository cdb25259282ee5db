/* Error codes of libtubeloop.
 *
 * Functions that can fail return int: 0 on success or a negative code. Codes from libuv
 * (UV_E*) pass through unchanged; the project's own codes live below -10000 so the two
 * never collide. tl_strerror() names both. */
#ifndef TL_BASE_ERR_H
#define TL_BASE_ERR_H

#define TL_WUR __attribute__((warn_unused_result))

enum {
  TL_OK = 0,
  TL_ENOMEM = -10001,     /* allocation failed */
  TL_EINVAL = -10002,     /* bad argument or input */
  TL_ETLS = -10003,       /* TLS set-up or handshake failure */
  TL_EDB = -10004,        /* the database answered with an error */
  TL_EDB_DOWN = -10005,   /* no database connection: retry later */
  TL_EBUSY = -10006,      /* a bounded queue is full */
  TL_ETIMEDOUT = -10007,  /* a deadline passed */
  TL_ECLOSED = -10008,    /* the peer or object went away */
  TL_EIO = -10009         /* a file could not be read or written */
};

const char *tl_strerror(int code);

#endif
