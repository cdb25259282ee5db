/* Weak placeholders for subcommands that are not written yet: the binary links, and such a
 * subcommand says plainly that it is not available (exit 1). Each real subcommand file
 * overrides its symbol; this file goes away when the last one lands. */
#include "cli.h"

#define PENDING(fn)                                                                        \
  __attribute__((weak)) int fn(tl_cli_t *c, int argc, char **argv) {                     \
    (void)c;                                                                               \
    (void)argc;                                                                            \
    return tl_cli_fail("%s: not available in this build yet", argv[0]);                                      \
  }
PENDING(tl_cmd_scan)
PENDING(tl_cmd_sync)
PENDING(tl_cmd_courier)
PENDING(tl_cmd_lab)
PENDING(tl_cmd_trace)
PENDING(tl_cmd_person)
PENDING(tl_cmd_stats)
PENDING(tl_cmd_anomalies)
PENDING(tl_cmd_ack)
PENDING(tl_cmd_resolve)
PENDING(tl_cmd_admin)
PENDING(tl_cmd_simulate)
