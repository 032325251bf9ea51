# Per-thread CPU accounting of a running process, for the benchmark scripts (sourced).
#
#   thread_cpu_snapshot PID > FILE          one line per thread: name user_ticks sys_ticks
#   thread_cpu_report BEFORE AFTER N        µs of user and system CPU per unit of work (N units,
#                                           e.g. transactions) by thread name, largest first
#
# Threads with the same name (tokio workers) are summed. Threads that ended between the two
# snapshots are not counted, so take both while the process is serving.

thread_cpu_snapshot() {
    local t
    for t in /proc/"$1"/task/*; do
        # comm may contain spaces; stat fields 14/15 are counted after the ")" that ends it.
        printf '%s %s\n' "$(tr ' ' _ <"$t/comm")" \
            "$(sed 's/.*) //' "$t/stat" | awk '{ print $12, $13 }')"
    done 2>/dev/null
}

thread_cpu_report() {
    local hz
    hz=$(getconf CLK_TCK)
    awk -v n="$3" -v hz="$hz" '
        FNR == NR { u0[$1] += $2; s0[$1] += $3; next }
        { u1[$1] += $2; s1[$1] += $3 }
        END {
            for (k in u1) {
                u = (u1[k] - u0[k]) / hz * 1e6 / n; s = (s1[k] - s0[k]) / hz * 1e6 / n
                if (u + s >= 0.05) printf "%8.1f %-18s user %6.1f  sys %6.1f\n", u + s, k, u, s
            }
        }' "$1" "$2" | sort -rn | awk '{ printf "    %-18s %7.1f µs (user %s, sys %s)\n", $2, $1, $4, $6 }'
}
