/* Route table and shared answer helpers of the API layer. */
#include "api/api.h"

#include "api/internal.h"

#include <stdlib.h>

void tl_api_reply_json(tl_http_exchange_t *x, int status, cJSON *root) {
  char *text = root ? cJSON_PrintUnformatted(root) : NULL;
  cJSON_Delete(root);
  if (text == NULL) {
    tl_http_reply_error(x, 500, "internal", "The answer could not be built.");
    return;
  }
  tl_http_reply(x, status, "application/json", "", text, strlen(text));
  free(text);
}

void tl_api_reply_db_error(tl_http_exchange_t *x, int status) {
  switch (status) {
  case TL_EDB_DOWN:
  case TL_ECLOSED:
    tl_http_reply_error(x, 503, "db_unavailable", "The database is unavailable; retry shortly.");
    return;
  case TL_EBUSY:
  case TL_ETIMEDOUT:
    tl_http_reply_error(x, 503, "overloaded", "The server is busy; retry shortly.");
    return;
  default:
    tl_http_reply_error(x, 500, "internal", "The request failed inside the server.");
    return;
  }
}

int tl_api_routes(tl_router_t *r, tl_api_t *api) {
  int bad = 0;
  bad |= tl_router_add(r, "GET", "/healthz", tl__api_healthz, api) < 0;
  bad |= tl_router_add(r, "GET", "/readyz", tl__api_readyz, api) < 0;
  bad |= tl_router_add(r, "GET", "/metrics", tl__api_metrics, api) < 0;
  return bad ? TL_ENOMEM : 0;
}
