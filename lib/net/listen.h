/* Listening sockets shared by several processes (SO_REUSEPORT), for `tubeloopd serve
 * --workers N`: each worker binds the same address with SO_REUSEPORT and listens on its own
 * socket, and the kernel spreads new connections over the listening ones. libuv 1.44 has no
 * UV_TCP_REUSEPORT, so the socket is made here and handed to uv_tcp_open. All sockets of one
 * port must belong to the same user (the kernel's rule), which forked workers do. */
#ifndef TL_NET_LISTEN_H
#define TL_NET_LISTEN_H

#include "base/err.h"

#include <sys/socket.h>

/* host (an IPv4 or IPv6 literal, or "localhost") and port into addr. 0 or a libuv error. */
TL_WUR int tl_net_addr(const char *host, int port, struct sockaddr_storage *addr);

/* A TCP socket, non-blocking and close-on-exec, with SO_REUSEADDR and SO_REUSEPORT, bound to
 * addr (port 0: the kernel picks one). The descriptor, or a negative errno (libuv style). */
TL_WUR int tl_net_bind_reuseport(const struct sockaddr_storage *addr);

/* The port a bound socket has, or -1. */
int tl_net_bound_port(int fd);

#endif
