/* tubeloop: the command line for sampling points, couriers, labs, officials and admins. */
#include "cli.h"

#include <locale.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  const char *name;
  int (*fn)(tl_cli_t *, int, char **);
  const char *zh, *en;
} command_t;

static const command_t commands[] = {
    {"scan", tl_cmd_scan, "采样点扫码（离线日志，自动同步）", "sampling point scanning (offline journal, synced)"},
    {"sync", tl_cmd_sync, "上传离线日志中未确认的扫码", "upload what the journal holds unacknowledged"},
    {"courier", tl_cmd_courier, "转运：pickup / deliver", "courier: pickup / deliver"},
    {"lab", tl_cmd_lab, "实验室：receive / reject / upload", "lab: receive / reject / upload"},
    {"trace", tl_cmd_trace, "追溯采样管或转运箱", "custody timeline of a tube or box"},
    {"person", tl_cmd_person, "查询受检者（证件号从终端读入）", "look a person up (ID number read from the terminal)"},
    {"stats", tl_cmd_stats, "区域统计", "region statistics"},
    {"anomalies", tl_cmd_anomalies, "异常列表", "anomaly list"},
    {"ack", tl_cmd_ack, "认领异常（首问负责）", "acknowledge an anomaly"},
    {"resolve", tl_cmd_resolve, "关闭异常（闭环）", "resolve an anomaly"},
    {"admin", tl_cmd_admin, "管理：区划、采样点、实验室、转运、轮次、令牌", "admin: regions, sites, labs, couriers, rounds, tokens"},
    {"simulate", tl_cmd_simulate, "模拟一轮筛查", "simulate a screening round"},
};

static void usage(const tl_cli_t *c, FILE *to) {
  fprintf(to, "%s\n", TL_MSG(c, "用法: tubeloop [--url URL] [--token T] [--cacert F] [--cert F [--key F]] [--json] [--lang en] 命令 ...",
                           "usage: tubeloop [--url URL] [--token T] [--cacert F] [--cert F [--key F]] [--json] [--lang en] COMMAND ..."));
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(to, "  %-10s %s\n", commands[i].name, TL_MSG(c, commands[i].zh, commands[i].en));
  fprintf(to, "%s\n", TL_MSG(c, "环境变量: TUBELOOP_URL, TUBELOOP_TOKEN, TUBELOOP_CACERT, TUBELOOP_CERT, TUBELOOP_KEY, TUBELOOP_LANG。每个命令都有 --help。",
                           "environment: TUBELOOP_URL, TUBELOOP_TOKEN, TUBELOOP_CACERT, TUBELOOP_CERT, TUBELOOP_KEY, TUBELOOP_LANG. Every command has --help."));
}

int main(int argc, char **argv) {
  setlocale(LC_ALL, "C.UTF-8");
  tl_cli_t c;
  if (tl_cli_init(&c, &argc, argv) != 0) return 2;
  int rc;
  if (argc < 2) {
    usage(&c, stderr);
    rc = 2;
  } else if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
    usage(&c, stdout);
    rc = 0;
  } else {
    rc = -1;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
      if (strcmp(argv[1], commands[i].name) == 0) rc = commands[i].fn(&c, argc - 1, argv + 1);
    if (rc == -1) {
      tl_cli_fail("%s '%.40s'", TL_MSG(&c, "未知命令", "unknown command"), argv[1]);
      usage(&c, stderr);
      rc = 2;
    }
  }
  tl_cli_dispose(&c);
  return rc;
}
