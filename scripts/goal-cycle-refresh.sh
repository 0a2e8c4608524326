#!/usr/bin/env bash
# Recurrent PPO on goal-cycle with hidden-state refreshing off (sb3-contrib's behaviour) and on,
# over several seeds; prints the mean evaluation return and the approximate KL to the collecting
# policy computed with stale (collected) and refreshed states, side by side, per evaluation step.
# Usage: scripts/goal-cycle-refresh.sh [STEPS] [SEEDS...]   (defaults: 500000, seeds 0 1 2)
set -euo pipefail
steps=${1:-500000}
shift || true
seeds=${*:-0 1 2}
out=${OUT_DIR:-runs/goal-cycle-refresh}
swift build -c release --product rrl > /dev/null
for mode in off on; do
  for seed in $seeds; do
    .build/release/rrl train ppo --env goal-cycle --network gru --envs 16 --rollout-steps 128 --chunk-length 16 \
      --minibatch-size 512 --epochs 8 --gamma 0.99 --gae-lambda 0.95 --entropy-coef 0.01 --lr 5e-4 \
      --steps "$steps" --eval-interval 25000 --seed "$seed" --$( [ "$mode" = on ] && echo refresh || echo no-refresh ) \
      --run-dir "$out/refresh-$mode-seed$seed" --overwrite --quiet > /dev/null
  done
done
# Columns: step, eval_return_mean (5), kl_stale (11), kl_refreshed (12), wall_seconds (20).
for mode in off on; do
  echo "refresh $mode (mean over seeds $seeds)"
  printf "%8s %10s %10s %12s %12s\n" step return "return sd" kl_stale kl_refreshed
  cat "$out"/refresh-$mode-seed*/metrics.csv | awk -F, '$1 != "step" {
      n[$1]++; r[$1] += $5; rr[$1] += $5 * $5; s[$1] += $11; f[$1] += $12 }
    END { for (k in n) { m = r[k] / n[k]; v = rr[k] / n[k] - m * m; if (v < 0) v = 0
      printf "%8d %10.2f %10.2f %12.5f %12.5f\n", k, m, sqrt(v), s[k] / n[k], f[k] / n[k] } }' | sort -n
  tail -q -n 1 "$out"/refresh-$mode-seed*/metrics.csv | awk -F, '{ w += $20; n++ } END { printf "mean wall seconds per run: %.1f\n\n", w / n }'
done
