/* `tubeloopd serve`: wires the loop, TLS, the database pool, the router and the HTTP server,
 * runs until SIGTERM/SIGINT, then drains and closes every handle. */
#ifndef TL_DAEMON_SERVE_H
#define TL_DAEMON_SERVE_H

#include "conf/config.h"

/* Returns the process exit status. */
int tl_serve(const tl_config_t *cfg);

#endif
