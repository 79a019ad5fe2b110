#!/bin/bash
# test/bench/policy/streams.sh N [PORT]: the delta fan-out after a policy change with N real
# map streams. Starts a throwaway Apache with the control bench's module
# (make -C test/bench/control first), registers N nodes of one user with ctlload, restarts
# Apache, opens the N map streams, then stores a policy in the database the way
# ts_store_policy_set does (row + generation + change log, with sqlite3) and times, with
# the kernel's receive timestamps, until every stream has a frame with its new PacketFilter.
# The policy lets the tailnet's addresses (a CIDR source) reach every node of the user on
# port 22 only: every node keeps its peers and gets a new, small filter (every stream
# receives its own frame). (A user source would list the 2N addresses of the user's nodes
# in every node's filter: O(N^2) bytes, 40 KB per node at 1,000 nodes.)
# The store happens outside Apache: the leader child notices the generation within 0.5 s.
set -eu
N=${1:-1000}
PORT=${2:-18470}
TOP=$(cd "$(dirname "$0")/../../.." && pwd)
B=$TOP/test/bench/control/build
S=$(mktemp -d /tmp/polfan-XXXXXX)
chmod 755 "$S"
printf '    TS2021DERPMapFile %s\n    TS2021BaseDomain bench.test\n    LogLevel ts2021:debug\n' \
    "$TOP/test/integration/data/derpmap.json" > "$S/extra.conf"
printf 'TS2021DrainTime 10\nListenBacklog 4096\nThreadStackSize 262144\n' > "$S/global.conf"
start() {
    prlimit --nofile=20000:20000 "$TOP/build/devserver" --port "$PORT" --state "$S/state" \
        --db sqlite --threads 64 --servers 2 --extra-conf "$S/extra.conf" \
        --global-conf "$S/global.conf" --module "$B/mod_ts2021.so" > "$S/devserver.log" 2>&1 &
    i=0
    while [ ! -s "$S/state/apache/httpd.pid" ] || ! (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 100 ] || { echo "apache did not start" >&2; exit 1; }; sleep 0.2
    done
}
stop() {
    kill "$(cat "$S/state/apache/httpd.pid")" 2>/dev/null || true
    while [ -e "$S/state/apache/httpd.pid" ] && kill -0 "$(cat "$S/state/apache/httpd.pid")" 2>/dev/null; do sleep 0.2; done
    rm -f "$S/state/apache/httpd.pid"
}
trap 'stop; [ -n "${BENCH_KEEP:-}" ] || rm -rf "$S"' EXIT
start
DB=$S/state/db/ts2021.sqlite
C="$TOP/ts2021ctl --db-driver sqlite3 --db-params $DB"
$C users create bench >/dev/null
K=$($C preauthkeys create --user bench --reusable | grep -o 'tskey-auth-\S*')
L="prlimit --nofile=20000:20000 $B/ctlload"
$L register --port "$PORT" --apache-pid "$(cat "$S/state/apache/httpd.pid")" --nodes "$N" \
    --keys "$S/keys.txt" --authkey "$K" --timeout 900 --quiet | grep -E '^(registered|register_failed|registrations_per_s)' || true
stop
start
cat > "$S/policy.sql" <<'SQL'
BEGIN;
UPDATE ts_state SET generation = generation + 1 WHERE id = 1;
INSERT INTO policies (data, created_at) VALUES ('{"acls": [{"action": "accept", "src": ["100.64.0.0/10"], "dst": ["bench@:22"]}]}', 0);
INSERT INTO change_log (generation, created_at, kind) SELECT generation, 0, 'policy.set' FROM ts_state WHERE id = 1;
COMMIT;
SQL
DEC=all
[ "$N" -le 1000 ] || DEC=every:10
$L maps --port "$PORT" --apache-pid "$(cat "$S/state/apache/httpd.pid")" --keys "$S/keys.txt" \
    --decode "$DEC" --quiet --policy-cmd "sqlite3 -cmd '.timeout 10000' $DB < $S/policy.sql" \
    | grep -E '^(first_maps|maps_first_map_since_start_max|policy_)' || true
grep -c "policy compiled\|does not compile\|rejected" "$S/state/apache/error.log" || true
