#!/usr/bin/env bash
# Nightly incremental scoring, for cron. New inits (and inits whose truth arrived since the
# last night) are scored; everything already in the statistics store is reused.
#
#   crontab:  30 5 * * *  /opt/wxeval/scripts/nightly.sh >> /var/log/wxeval-nightly.log 2>&1
#
# The config should set `evaluation.missing_truth: pending` so that inits whose longer leads
# verify after the end of the truth are left for a later night instead of failing the job,
# and `output.statistics` to a shared location (a folder or gs:// bucket).
set -euo pipefail
CONFIG=${WXEVAL_CONFIG:-/opt/wxeval/configs/nightly.yaml}
OUTPUT=${WXEVAL_OUTPUT:-/srv/wxeval/results}
MODELS=${WXEVAL_MODELS:-graphcast,pangu,hres}
BASELINE=${WXEVAL_BASELINE:-hres}
STOP=$(date -u +%Y-%m-%d)

# Gate on the pre-flight check of the same selection: exit 3 means the scores would be wrong,
# do not publish them.
wxeval check --config "$CONFIG" --model "$MODELS" --stop "$STOP" --output "$OUTPUT"
wxeval score --config "$CONFIG" --model "$MODELS" --stop "$STOP" --output "$OUTPUT"
others=$(echo "$MODELS" | tr ',' '\n' | grep -vx "$BASELINE" | paste -sd, -)
wxeval scorecard --results "$OUTPUT" --models "$others" --baseline "$BASELINE" \
  --config "$CONFIG" --output "$OUTPUT/scorecard.html"
