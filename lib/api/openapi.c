/* GET /openapi.json: the OpenAPI 3.1 description of every call of the daemon (DESIGN §5).
 *
 * The document is lib/api/openapi.json, compiled in at build time (cmake/embed.cmake), so the
 * answer needs no file at run time and always describes the binary that sends it. It is public
 * like /healthz: it holds no data, and clients need it before they have a token. */
#include "api/internal.h"

void tl__api_openapi(tl_http_exchange_t *x, void *ctx) {
  (void)ctx;
  tl_http_reply(x, 200, "application/json", "", (const char *)tl__openapi_json,
                tl__openapi_json_len);
}
