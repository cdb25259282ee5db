/* Listening sockets shared by several processes (listen.h). */
#include "net/listen.h"

#include <uv.h>

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

int tl_net_addr(const char *host, int port, struct sockaddr_storage *addr) {
  memset(addr, 0, sizeof *addr);
  int rc = uv_ip4_addr(host, port, (struct sockaddr_in *)addr);
  if (rc != 0) rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)addr);
  if (rc != 0 && strcmp(host, "localhost") == 0)
    rc = uv_ip4_addr("127.0.0.1", port, (struct sockaddr_in *)addr);
  return rc;
}

int tl_net_bind_reuseport(const struct sockaddr_storage *addr) {
  int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int on = 1;
  socklen_t len = addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0 ||
      bind(fd, (const struct sockaddr *)addr, len) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  return fd;
}

int tl_net_bound_port(int fd) {
  struct sockaddr_storage addr;
  socklen_t len = sizeof addr;
  if (getsockname(fd, (struct sockaddr *)&addr, &len) != 0) return -1;
  if (addr.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
  return ntohs(((struct sockaddr_in *)&addr)->sin_port);
}
