#!/usr/bin/env bash
# Times two commands side by side in the same minutes: runs A, then B, PAIRS times, and prints each
# run's whole-process CPU seconds (user + system, from /usr/bin/time), the medians and the median of
# the per-pair ratios A / B. The only fair way to compare two programs (or two builds) here: machines
# of one kind differ by 2x and more, so a time taken elsewhere or earlier proves nothing.
# Usage: scripts/alternate.sh PAIRS "COMMAND A" "COMMAND B"
# Example (rrl against another program's Pendulum SAC, built by you, one BLAS thread):
#   scripts/alternate.sh 5 ".build/release/rrl train sac --env pendulum --steps 20000 --warmup 100 \
#     --eval-interval 20000 --run-dir /tmp/alt --overwrite --quiet" "OPENBLAS_NUM_THREADS=1 ./their-sac"
set -euo pipefail
if [ $# -ne 3 ] || ! [[ $1 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 PAIRS \"COMMAND A\" \"COMMAND B\"   (PAIRS: a positive whole number)" >&2
  exit 2
fi
[ -x /usr/bin/time ] || { echo "$0 needs /usr/bin/time (Debian: apt-get install time)" >&2; exit 2; }
pairs=$1
times=$(mktemp)
trap 'rm -f "$times"' EXIT
a=() b=()
for i in $(seq 1 "$pairs"); do
  for which in A B; do
    if [ $which = A ]; then command=$2; else command=$3; fi
    if ! /usr/bin/time -f "%U %S" -o "$times" bash -c "$command" > /dev/null 2>&1; then
      echo "command $which failed (run it alone to see why): $command" >&2
      exit 1
    fi
    seconds=$(awk '{ printf "%.2f", $1 + $2 }' "$times")
    echo "pair $i: $which $seconds s"
    if [ $which = A ]; then a+=("$seconds"); else b+=("$seconds"); fi
  done
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratios=()
for i in "${!a[@]}"; do ratios+=("$(awk -v x="${a[$i]}" -v y="${b[$i]}" 'BEGIN { printf "%.3f", x / y }')"); done
echo "median CPU seconds: A $(median "${a[@]}"), B $(median "${b[@]}")"
echo "A / B per pair: ${ratios[*]}; median $(median "${ratios[@]}")"
