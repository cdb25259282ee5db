/* Names for the error codes of err.h (and libuv's). */
#include "base/err.h"

#include <uv.h>

const char *tl_strerror(int code) {
  switch (code) {
  case TL_OK: return "ok";
  case TL_ENOMEM: return "out of memory";
  case TL_EINVAL: return "invalid argument";
  case TL_ETLS: return "TLS failure";
  case TL_EDB: return "database error";
  case TL_EDB_DOWN: return "database unavailable";
  case TL_EBUSY: return "queue full";
  case TL_ETIMEDOUT: return "timed out";
  case TL_ECLOSED: return "closed";
  case TL_EIO: return "I/O error";
  default: return code < 0 && code > -4096 ? uv_strerror(code) : "unknown error";
  }
}
