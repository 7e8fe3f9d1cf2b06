#!/usr/bin/env bash
# Time to first prediction of the README's CPU quick start, offline settings: from `make up`
# (image build included) to the first 200 answer of POST /invocations.
#
#   benchmarks/first_prediction.sh          warm: whatever images and build cache exist
#   benchmarks/first_prediction.sh --cold   cold: removes the oic:cpu image and the BuildKit
#                                           cache first (not the debian base image, which users
#                                           pull); destructive for other projects' build cache
#
# Everything the run writes goes to a temporary folder (OIC_* settings), not the work tree.
# Prints one line: the seconds, and where the time went (build, train, serve start).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ "${1:-}" == --cold ]]; then
    docker image rm -f oic:cpu >/dev/null 2>&1 || true
    docker builder prune -af >/dev/null 2>&1
fi

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export OIC_PROFILE=cpu OIC_BAKE_WEIGHTS=0 OIC_HYPERPARAMETERS=./config/hyperparameters-offline.json
export OIC_DATA_DIR=$work/data OIC_MODEL_DIR=$work/model OIC_OUTPUT_DIR=$work/output
export OIC_CHECKPOINT_DIR=$work/checkpoints OIC_PORT=$port COMPOSE_PROJECT_NAME=oic-ttfp-$$
[[ -f /etc/ssl/certs/ca-certificates.crt ]] && export OIC_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
mkdir -p "$OIC_DATA_DIR"
cleanup() { docker compose --profile cpu down -v --timeout 10 >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

start=$(date +%s.%N)
scripts/up -d --build >"$work/up.log" 2>&1 || { cat "$work/up.log"; exit 1; }
up_done=$(date +%s.%N)
image=$(find "$OIC_DATA_DIR/validation" -name '*.jpg' | head -1)
for _ in $(seq 600); do
    code=$(curl -s -o "$work/answer" -w '%{http_code}' -H 'Content-Type: image/jpeg' \
        --data-binary "@$image" "http://127.0.0.1:$port/invocations" || true)
    [[ "$code" == 200 ]] && break
    sleep 0.5
done
end=$(date +%s.%N)
[[ "$code" == 200 ]] || { echo "no 200 answer (last: $code)"; docker compose --profile cpu logs; exit 1; }
train_s=$(docker compose --profile cpu logs train-cpu 2>/dev/null | grep -o 'Time cost=[0-9.]*' |
    awk -F= '{s += $2} END {printf "%.0f", s}')
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", b - a }'; }
echo "time to first prediction: $(secs "$start" "$end") s (make up -d until training ended:" \
    "$(secs "$start" "$up_done") s, of which training epochs ${train_s} s; then serving:" \
    "$(secs "$up_done" "$end") s); answer: $(head -c 120 "$work/answer")"
