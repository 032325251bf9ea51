#!/usr/bin/env bash
# Kept for the commands already in docs and notes: the masking A/B run of scripts/bench-ab.sh.
exec bash "$(dirname "${BASH_SOURCE[0]}")/bench-ab.sh" --compare masking "$@"
