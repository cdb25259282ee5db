/* Handlers of the API layer, shared between its files (not part of the public API). */
#ifndef TL_API_INTERNAL_H
#define TL_API_INTERNAL_H

#include "api/api.h"

#include <string.h>

void tl__api_healthz(tl_http_exchange_t *x, void *ctx);
void tl__api_readyz(tl_http_exchange_t *x, void *ctx);
void tl__api_metrics(tl_http_exchange_t *x, void *ctx);

#endif
