#!/usr/bin/env bash
# The multi-agent family side by side on one environment and one budget: MAPPO, IPPO, QMIX, VDN and
# MASAC (each with its defaults; VDN, QMIX and MASAC step 8 copies, MASAC with one update per 8
# steps as on foraging), over seeds. Evaluates STEPS/10 apart on 20 deterministic episodes, then
# prints each run's final evaluation return and each algorithm's mean, and writes one report.
# Usage: scripts/multi-agent-family.sh ENV STEPS [SEEDS...]   (default seeds 0 1 2)
# RRL=path uses that binary; OUT_DIR the runs' folder (default runs/family-ENV); ALGORITHMS the
# algorithms (default "mappo ippo qmix vdn masac"); JOBS runs at a time (default 2); OPTIONS more
# options for every run.
set -euo pipefail
env=$1
steps=$2
shift 2
seeds=${*:-0 1 2}
out=${OUT_DIR:-runs/family-$env}
rrl=${RRL:-.build/release/rrl}
algorithms=${ALGORITHMS:-mappo ippo qmix vdn masac}
[ -n "${RRL:-}" ] || swift build -c release --product rrl > /dev/null
options() {
  case $1 in
    vdn|qmix) echo "--envs 8" ;;
    masac) echo "--envs 8 --critic-interval 8" ;;
    *) echo "" ;;
  esac
}
for algorithm in $algorithms; do
  for seed in $seeds; do
    echo "$rrl train $algorithm --env $env --steps $steps --eval-interval $((steps / 10)) --eval-episodes 20 $(options "$algorithm") ${OPTIONS:-} --seed $seed --run-dir $out/$algorithm-seed$seed --overwrite --quiet > /dev/null"
  done
done | xargs -P "${JOBS:-2}" -I{} sh -c "{}"
echo "$env, $steps steps: final evaluation return per seed (20 deterministic episodes), mean"
for algorithm in $algorithms; do
  finals=$(for seed in $seeds; do
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "eval_return_mean") c = i } END { printf "%.2f", $c }' "$out/$algorithm-seed$seed/metrics.csv"
    echo
  done | tr '\n' ' ')
  printf "%-6s %s(mean %s)\n" "$algorithm" "$finals" "$(echo "$finals" | awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; printf "%.2f", s / NF }')"
done
runs=$(for algorithm in $algorithms; do for seed in $seeds; do echo "$out/$algorithm-seed$seed"; done; done)
# shellcheck disable=SC2086
$rrl report $runs --output "$out/report.html" --title "$env: $algorithms, $steps steps" > /dev/null
echo "report: $out/report.html"
