/* Unit tests of lib/conf: flags, environment, precedence, loopback rule for --no-tls. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "conf/config.h"

#include <string.h>

typedef struct {
  const char *args[14]; /* after the subcommand */
  const char *env[6];
  int need;
  int ok;
  const char *err_contains;
} case_t;

#define ALL (TL_CONFIG_NEED_DB | TL_CONFIG_NEED_LISTEN | TL_CONFIG_NEED_TLS | TL_CONFIG_NEED_KEYS)

static const case_t cases[] = {
    {{"--db", "dbname=x", "--listen", "127.0.0.1:8443", "--tls-cert", "c", "--tls-key", "k",
      "--keys", "f"},
     {0}, ALL, 1, NULL},
    {{"--db=dbname=x", "--listen=[::1]:1", "--no-tls", "--keys=f"}, {0}, ALL, 1, NULL},
    {{"--listen", "0.0.0.0:8443", "--no-tls"}, {"TUBELOOP_DB=dbname=x", "TUBELOOP_KEYS=f"}, ALL,
     0, "loopback"},
    {{"--listen", "10.0.0.1:8443", "--no-tls", "--db", "x", "--keys", "f"}, {0}, ALL, 0,
     "loopback"},
    {{"--listen", "localhost:80", "--no-tls", "--db", "x", "--keys", "f"}, {0}, ALL, 1, NULL},
    {{"--listen", "127.0.0.1:8443"}, {"TUBELOOP_DB=x", "TUBELOOP_KEYS=f"}, ALL, 0, "--tls-cert"},
    {{0}, {"TUBELOOP_DB=x"}, TL_CONFIG_NEED_DB, 1, NULL},
    {{0}, {0}, TL_CONFIG_NEED_DB, 0, "--db"},
    {{"--bogus", "1"}, {0}, 0, 0, "unknown option --bogus"},
    {{"--db"}, {0}, 0, 0, "needs a value"},
    {{"--listen", "nohost"}, {"TUBELOOP_DB=x"}, TL_CONFIG_NEED_LISTEN, 0, "HOST:PORT"},
    {{"--listen", "1.2.3.4:99999"}, {0}, TL_CONFIG_NEED_LISTEN, 0, "HOST:PORT"},
    {{"--pool-size", "0"}, {0}, 0, 0, "--pool-size"},
    {{"--pool-size", "9x"}, {0}, 0, 0, "--pool-size"},
    {{0}, {"TUBELOOP_POOL_SIZE=abc"}, 0, 0, "TUBELOOP_POOL_SIZE"},
    {{"--header-timeout", "-1"}, {0}, 0, 0, "--header-timeout"},
    {{"--db", ""}, {0}, 0, 0, "empty"},
    /* device certificates: a mode needs CAs, CAs need a mode and TLS */
#define SERVE_TLS                                                                      \
  "--db", "x", "--keys", "f", "--listen", "127.0.0.1:1", "--tls-cert", "c", "--tls-key", "k"
    {{SERVE_TLS}, {"TUBELOOP_TLS_CLIENT_CA=ca", "TUBELOOP_DEVICE_CERTS=required"}, ALL, 1, NULL},
    {{SERVE_TLS}, {"TUBELOOP_TLS_CLIENT_CA=ca", "TUBELOOP_DEVICE_CERTS=optional"}, ALL, 1, NULL},
    {{SERVE_TLS}, {"TUBELOOP_DEVICE_CERTS=required"}, ALL, 0, "needs --tls-client-ca"},
    {{SERVE_TLS}, {"TUBELOOP_DEVICE_CERTS=optional"}, ALL, 0, "needs --tls-client-ca"},
    {{SERVE_TLS}, {"TUBELOOP_TLS_CLIENT_CA=ca"}, ALL, 0, "no effect with --device-certs off"},
    {{SERVE_TLS}, {"TUBELOOP_TLS_CLIENT_CA=ca", "TUBELOOP_DEVICE_CERTS=on"}, ALL, 0,
     "expected off, optional or required"},
    {{"--no-tls", "--listen", "127.0.0.1:1", "--db", "x", "--keys", "f", "--tls-client-ca", "ca",
      "--device-certs", "required"}, {0}, ALL, 0, "cannot go with --no-tls"},
    {{"--device-certs", "Required"}, {0}, 0, 0, "--device-certs"},
    /* migrate shares serve's environment file: the pairing is checked for serve only */
    {{"--device-certs", "required", "--db", "x"}, {0}, TL_CONFIG_NEED_DB, 1, NULL},
#undef SERVE_TLS
};

static void test_table(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const case_t *t = &cases[i];
    char *argv[18] = {"tubeloopd", "serve"};
    int argc = 2;
    for (int j = 0; t->args[j]; j++) argv[argc++] = (char *)t->args[j];
    char *env[8] = {0};
    for (int j = 0; t->env[j]; j++) env[j] = (char *)t->env[j];
    tl_config_t c;
    tl_config_defaults(&c);
    char err[256] = "";
    int rc = tl_config_parse(&c, t->need, argc, argv, 2, env, err, sizeof err);
    if ((rc == 0) != t->ok) fail_msg("case %zu: rc=%d err=%s", i, rc, err);
    if (t->err_contains && strstr(err, t->err_contains) == NULL)
      fail_msg("case %zu: error '%s' lacks '%s'", i, err, t->err_contains);
  }
}

static void test_flag_beats_env_and_units(void **state) {
  (void)state;
  char *argv[] = {"tubeloopd", "serve", "--db", "dbname=flag", "--idle-timeout", "2.5",
                  "--listen", "[::1]:9000"};
  char *env[] = {"TUBELOOP_DB=dbname=env", "TUBELOOP_POOL_SIZE=7", "TUBELOOP_TZ=Asia/Urumqi",
                 "UNRELATED=1", NULL};
  tl_config_t c;
  tl_config_defaults(&c);
  char err[256];
  assert_int_equal(tl_config_parse(&c, TL_CONFIG_NEED_DB | TL_CONFIG_NEED_LISTEN, 8, argv, 2,
                                   env, err, sizeof err),
                   0);
  assert_string_equal(c.db, "dbname=flag");
  assert_int_equal(c.pool_size, 7);
  assert_int_equal(c.idle_timeout_ms, 2500);
  assert_string_equal(c.tz, "Asia/Urumqi");
  assert_string_equal(c.listen_host, "::1");
  assert_int_equal(c.listen_port, 9000);
  assert_int_equal(c.header_timeout_ms, 10000); /* default kept */
}

static void test_device_certs_parsed(void **state) {
  (void)state;
  char *argv[] = {"tubeloopd", "serve", "--device-certs", "optional", "--tls-client-ca", "ca.pem"};
  char *env[] = {"TUBELOOP_DEVICE_CERTS=required", NULL};
  tl_config_t c;
  tl_config_defaults(&c);
  char err[256];
  assert_int_equal(c.device_certs, TL_DEVICE_CERTS_OFF);
  assert_int_equal(tl_config_parse(&c, 0, 6, argv, 2, env, err, sizeof err), 0);
  assert_int_equal(c.device_certs, TL_DEVICE_CERTS_OPTIONAL); /* the flag beats the variable */
  assert_string_equal(c.tls_client_ca, "ca.pem");
  tl_config_defaults(&c);
  assert_int_equal(tl_config_parse(&c, 0, 2, argv, 2, env, err, sizeof err), 0);
  assert_int_equal(c.device_certs, TL_DEVICE_CERTS_REQUIRED);
  assert_non_null(strstr(tl_config_usage(), "--device-certs"));
  assert_non_null(strstr(tl_config_usage(), "TUBELOOP_TLS_CLIENT_CA"));
}

static void test_loopback(void **state) {
  (void)state;
  assert_true(tl_config_is_loopback("127.0.0.1"));
  assert_true(tl_config_is_loopback("127.255.0.9"));
  assert_true(tl_config_is_loopback("::1"));
  assert_true(tl_config_is_loopback("localhost"));
  assert_false(tl_config_is_loopback("0.0.0.0"));
  assert_false(tl_config_is_loopback("::"));
  assert_false(tl_config_is_loopback("128.0.0.1"));
  assert_false(tl_config_is_loopback("localhost.example"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table),
      cmocka_unit_test(test_flag_beats_env_and_units),
      cmocka_unit_test(test_loopback),
      cmocka_unit_test(test_device_certs_parsed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
