#!/usr/bin/env bash
# Sums up the clock samples device_run.sh took during gpu-check (nvidia-smi --format=csv,nounits: timestamp,
# utilization.gpu, clocks.sm, clocks.max.sm, power.draw, temperature.gpu, clock event reasons): over the samples with
# the GPU busy (utilization >= 50 %), the SM clock's minimum, median and maximum against the GPU's maximum, the power
# and temperature peaks, and the clock event reasons seen (a bit mask; 0x1 is idle, 0x4 the application clock setting,
# 0x20/0x40 thermal, 0x80 power brake). One line; says so when there are no samples.
set -uo pipefail
f="${1:?usage: clocks.sh clocks.csv}"
[ -s "$f" ] || { echo "clocks: no samples ($f missing or empty)"; exit 0; }
awk -F', *' '
  NR == 1 || $2 !~ /^[0-9]+$/ { next } # the header, and lines nvidia-smi wrote instead of samples
  { all++ }
  $2 >= 50 {
    n++; clk[n] = $3 + 0; max = $4 + 0
    if ($5 + 0 > pw) pw = $5 + 0
    if ($6 + 0 > tc) tc = $6 + 0
    if ($7 != "" && !($7 in seen)) { seen[$7] = 1; rs = rs (rs == "" ? "" : " ") $7 }
  }
  END {
    if (!n) { printf "clocks: %d samples, none with the GPU busy\n", all; exit }
    # insertion sort: a run has a few hundred samples
    for (i = 2; i <= n; i++) { v = clk[i]; for (j = i - 1; j >= 1 && clk[j] > v; j--) clk[j + 1] = clk[j]; clk[j + 1] = v }
    printf "clocks: %d busy samples of %d: SM %d / %d / %d MHz (min / median / max; the GPU'"'"'s max %d), power up to %.0f W, up to %d C, reasons %s\n",
      n, all, clk[1], clk[int((n + 1) / 2)], clk[n], max, pw, tc, (rs == "" ? "-" : rs)
  }' "$f"
