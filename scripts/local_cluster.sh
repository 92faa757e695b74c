#!/usr/bin/env bash
# Runs N workers of bin/train_supcon.py --strategy=multi_worker on this machine
# (127.0.0.1, free ports), each with its own TF_CONFIG, to try the multi-worker
# path without a cluster:
#
#   scripts/local_cluster.sh 2 --preset=supcon_digits_resnet20 --model_dir=runs/mw
#
# Worker i's output goes to $LOG_DIR/worker_<i>.log (default: <model_dir>.logs
# beside the model_dir); this script prints "worker <i>: pid <pid>, log <path>"
# for each.
# Ctrl-C stops every worker. The exit status is the first failing worker's.
# PYTHON (default .venv/bin/python, else python3) and SCRIPT
# (default bin/train_supcon.py) choose what runs.
set -u
if [[ $# -lt 1 || ! "$1" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 N [flags for bin/train_supcon.py]" >&2
  exit 2
fi
count=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-}
if [[ -z "$python" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then python=$root/.venv/bin/python; else python=python3; fi
fi
script=${SCRIPT:-$root/bin/train_supcon.py}
model_dir=
for arg in "$@"; do
  case $arg in --model_dir=*) model_dir=${arg#--model_dir=} ;; esac
done
if [[ -z "$model_dir" ]]; then
  echo "$0: --model_dir=DIR is required" >&2
  exit 2
fi
log_dir=${LOG_DIR:-${model_dir%/}.logs}
mkdir -p "$log_dir"

# N free ports on loopback.
ports=$("$python" - "$count" <<'EOF'
import socket, sys
sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in sockets:
  s.bind(('127.0.0.1', 0))
print(','.join(str(s.getsockname()[1]) for s in sockets))
EOF
)
workers=$(echo "$ports" | sed 's/\([0-9]*\)/"127.0.0.1:\1"/g')

pids=()
stop() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
}
trap 'stop; exit 130' INT TERM

for ((i = 0; i < count; i++)); do
  log=$log_dir/worker_$i.log
  TF_CONFIG="{\"cluster\": {\"worker\": [$workers]}, \"task\": {\"type\": \"worker\", \"index\": $i}}" \
    "$python" "$script" --strategy=multi_worker "$@" > "$log" 2>&1 &
  pids+=($!)
  echo "worker $i: pid $!, log $log"
done

status=0
for pid in "${pids[@]}"; do
  wait "$pid"
  code=$?
  if [[ $code -ne 0 && $status -eq 0 ]]; then status=$code; fi
done
exit $status
