/* `tubeloopd serve --workers N`: N daemon processes on one port, and their supervisor. */
#ifndef TL_DAEMON_WORKERS_H
#define TL_DAEMON_WORKERS_H

#include "conf/config.h"

/* Runs the supervisor until its workers have stopped; returns the process exit status. */
int tl_workers_run(tl_config_t *cfg);

#endif
