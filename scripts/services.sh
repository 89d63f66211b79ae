#!/usr/bin/env bash
# Local services for the analytics node: PostgreSQL, Redis and anvil, all on loopback.
#
#   scripts/services.sh [up]   install what is missing, reuse what already runs, start the rest
#                              (also Node.js, contracts/node_modules and Debian's Chromium,
#                              which the dashboard's browser test drives)
#   scripts/services.sh down   stop what this script started (by its pid files), nothing else
#   scripts/services.sh status print each service, up or down, with its address
#   scripts/services.sh env    print export lines: eval "$(scripts/services.sh env)"
#
# Environment (all optional):
#   ANALYTICS_STATE_DIR   data, logs and pid files   (default ~/.local/state/analytics-node)
#   ANALYTICS_CACHE_DIR   npm install of anvil        (default ~/.cache/analytics-node)
#   ANALYTICS_PG_PORT     PostgreSQL port             (default 5432)
#   ANALYTICS_REDIS_PORT  Redis port                  (default 6379)
#   ANALYTICS_ANVIL_PORT  anvil JSON-RPC port         (default 8545)
#
# See docs/operations.md for what runs where.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
STATE_DIR="${ANALYTICS_STATE_DIR:-$HOME/.local/state/analytics-node}"
CACHE_DIR="${ANALYTICS_CACHE_DIR:-$HOME/.cache/analytics-node}"

HOST=127.0.0.1
PG_PORT="${ANALYTICS_PG_PORT:-5432}"
REDIS_PORT="${ANALYTICS_REDIS_PORT:-6379}"
ANVIL_PORT="${ANALYTICS_ANVIL_PORT:-8545}"

PG_USER=analytics
PG_PASSWORD=password
PG_DB=analytics_db

ANVIL_VERSION=1.7.1
TANSU_VERSION=0.6.0
KAFKA_PORT="${ANALYTICS_KAFKA_PORT:-9092}"
TANSU_BIN="${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
ANVIL_NPM_DIR="$CACHE_DIR/npm"
ANVIL_BIN="$CACHE_DIR/bin/anvil"

PG_ROOT="$STATE_DIR/postgres"     # owned by the postgres OS user when run as root
PG_DATA="$PG_ROOT/data"
PG_SOCK="$PG_ROOT/run"
PG_LOG="$PG_ROOT/postgres.log"
REDIS_DIR="$STATE_DIR/redis"
REDIS_PID="$REDIS_DIR/redis.pid"
REDIS_LOG="$REDIS_DIR/redis.log"
ANVIL_DIR="$STATE_DIR/anvil"
ANVIL_PID="$ANVIL_DIR/anvil.pid"
ANVIL_LOG="$ANVIL_DIR/anvil.log"
INSTALL_LOG="$STATE_DIR/install.log"

DATABASE_URL="postgresql://$PG_USER:$PG_PASSWORD@$HOST:$PG_PORT/$PG_DB"
REDIS_URL="redis://$HOST:$REDIS_PORT"
ETH_RPC_URL="http://$HOST:$ANVIL_PORT"

# ---------------------------------------------------------------------------
# helpers

die() {
    echo "services.sh: error: $*" >&2
    exit 1
}

# One aligned line per service: name, what happened, where.
report() {
    printf '%-10s %-24s %s\n' "$1" "$2" "$3"
}

# Appends a comma-separated word to the variable named $1.
add_action() {
    local -n _acts="$1"
    _acts="${_acts:+$_acts, }$2"
}

# Prints the last lines of a log to stderr, for failure messages.
show_tail() {
    local file="$1"
    if [[ -r "$file" ]]; then
        echo "---- last lines of $file ----" >&2
        tail -n 20 "$file" >&2 || true
        echo "----" >&2
    fi
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Installs Debian packages; `apt-get update` runs at most once per invocation.
APT_UPDATED=0
apt_install() {
    is_root || die "missing packages ($*); install them as root: apt-get install -y $*"
    command -v apt-get >/dev/null || die "missing packages ($*) and no apt-get on this machine"
    mkdir -p "$STATE_DIR"
    if [[ $APT_UPDATED -eq 0 ]]; then
        if ! apt-get -o DPkg::Lock::Timeout=120 update >>"$INSTALL_LOG" 2>&1; then
            show_tail "$INSTALL_LOG"
            die "apt-get update failed (full log: $INSTALL_LOG)"
        fi
        APT_UPDATED=1
    fi
    if ! DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y "$@" \
        >>"$INSTALL_LOG" 2>&1; then
        show_tail "$INSTALL_LOG"
        die "apt-get install $* failed (full log: $INSTALL_LOG)"
    fi
}

# Runs a command as the PostgreSQL server's OS user: `postgres` when we are root
# (the server refuses to run as root), ourselves otherwise. The working directory
# is / so that a home directory the postgres user cannot read does not matter.
as_pg() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

# Is the process running? A zombie that init has not reaped yet counts as gone.
proc_running() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat:0:1}" != "Z" ]]
}

# Is the process in the pid file alive and named as expected? Prints its pid.
pid_alive() {
    local pidfile="$1" comm="$2" pid
    [[ -r "$pidfile" ]] || return 1
    pid="$(head -n 1 "$pidfile" | tr -dc '0-9')"
    [[ -n "$pid" ]] || return 1
    proc_running "$pid" || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm"* ]] || return 1
    echo "$pid"
}

# Stops the process in a pid file written by this script (or by the server at our
# request), after checking that the pid still belongs to the expected program.
stop_pidfile() {
    local name="$1" pidfile="$2" comm="$3" addr="$4" probe="$5" pid i
    if pid="$(pid_alive "$pidfile" "$comm")"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            proc_running "$pid" || break
            sleep 0.1
        done
        if proc_running "$pid"; then
            die "$name (pid $pid) did not stop within 10 s"
        fi
        rm -f "$pidfile"
        report "$name" "stopped" "$addr (pid $pid)"
    else
        rm -f "$pidfile"
        if "$probe" >/dev/null 2>&1; then
            report "$name" "left running" "$addr (not started by this script)"
        else
            report "$name" "not running" "$addr"
        fi
    fi
}

# Serialises up and down. The servers are started with fd 9 closed, so that
# they do not hold the lock after this script exits.
take_lock() {
    mkdir -p "$STATE_DIR"
    exec 9>"$STATE_DIR/services.lock"
    flock -w 300 9 || die "another services.sh is still running (lock $STATE_DIR/services.lock)"
}

# ---------------------------------------------------------------------------
# PostgreSQL

PG_BIN=""
find_pg_bin() {
    local candidate
    # The newest installed major version.
    candidate="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    if [[ -n "$candidate" && -x "$candidate/postgres" ]]; then
        PG_BIN="$candidate"
        return 0
    fi
    return 1
}

pg_ready() {
    "$PG_BIN/pg_isready" -q -h "$HOST" -p "$PG_PORT" -t 2
}

# Succeeds when the analytics role can log in over TCP with its password, owns
# the database and may create databases.
pg_login_ok() {
    local out
    out="$(PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=3 "$PG_BIN/psql" -X -w -q -tA \
        -h "$HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" \
        -c "SELECT r.rolcreatedb AND d.datdba = r.oid
              FROM pg_roles r, pg_database d
             WHERE r.rolname = current_user AND d.datname = current_database()" \
        2>/dev/null)" || return 1
    [[ "$out" == "t" ]]
}

# Is our cluster's postmaster running? Its pid file must name a live process
# called postgres: after a reboot the pid may belong to something else.
pg_cluster_running() {
    pid_alive "$PG_DATA/postmaster.pid" postgres >/dev/null
}

# Grants the postgres OS user search (x) permission, and nothing more, on every
# directory above our cluster that it cannot cross yet (a 0700 /root, typically).
# Walks from / downwards, so each check sees the grants made above it.
pg_grant_path() {
    is_root || return 0
    as_pg test -w "$PG_ROOT" && return 0
    local dir="" part
    local -a parts
    IFS=/ read -r -a parts <<<"${PG_ROOT#/}"
    for part in "${parts[@]}"; do
        [[ -n "$part" ]] || continue
        dir="$dir/$part"
        [[ "$dir" == "$PG_ROOT" ]] && break
        as_pg test -x "$dir" && continue
        command -v setfacl >/dev/null || apt_install acl
        setfacl -m u:postgres:x "$dir" ||
            die "cannot let the postgres user reach $PG_ROOT (setfacl on $dir failed); set ANALYTICS_STATE_DIR to a directory it can reach"
    done
    as_pg test -w "$PG_ROOT" || die "the postgres user cannot write $PG_ROOT"
}

pg_init_cluster() {
    mkdir -p "$PG_ROOT"
    if is_root; then
        chown postgres:postgres "$PG_ROOT"
    fi
    chmod 0700 "$PG_ROOT"
    pg_grant_path
    as_pg mkdir -p "$PG_SOCK"
    as_pg chmod 0700 "$PG_SOCK"
    [[ -f "$PG_DATA/PG_VERSION" ]] && return 0
    # Local socket: peer (only the server's OS user reaches the socket directory).
    # TCP from 127.0.0.1/32 and ::1/128: password, as SCRAM.
    if ! as_pg "$PG_BIN/initdb" -D "$PG_DATA" -E UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256 >"$PG_ROOT/initdb.log" 2>&1; then
        show_tail "$PG_ROOT/initdb.log"
        die "initdb failed for $PG_DATA"
    fi
    as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null <<EOF

# analytics-node local cluster
listen_addresses = '$HOST'
unix_socket_directories = '$PG_SOCK'
unix_socket_permissions = 0700
max_connections = 200
synchronous_commit = off
EOF
    add_action PG_ACTIONS "initdb"
}

pg_start_cluster() {
    if pg_cluster_running; then
        die "our PostgreSQL cluster ($PG_DATA) runs but does not answer on $HOST:$PG_PORT; run 'scripts/services.sh down' and 'up' again (was ANALYTICS_PG_PORT changed?)"
    fi
    # Leftovers of a server that did not shut down cleanly; only our cluster
    # uses this socket directory.
    as_pg rm -f "$PG_DATA/postmaster.pid" "$PG_SOCK/.s.PGSQL.$PG_PORT" "$PG_SOCK/.s.PGSQL.$PG_PORT.lock"
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -o "-p $PG_PORT" -w -t 60 start \
        >/dev/null 2>&1 9>&-; then
        show_tail "$PG_LOG"
        die "PostgreSQL did not start on $HOST:$PG_PORT (log: $PG_LOG; to start over, run 'down' and delete $PG_DATA)"
    fi
    local i
    for ((i = 0; i < 100; i++)); do
        pg_ready && break
        sleep 0.1
    done
    pg_ready || die "PostgreSQL started but does not answer on $HOST:$PG_PORT (log: $PG_LOG)"
    add_action PG_ACTIONS "started"
}

# Runs SQL as a superuser over a Unix socket: our own cluster's socket first, then
# the usual places of a distribution's server when we reuse one.
pg_admin_sql() {
    local sql="$1" dir
    for dir in "$PG_SOCK" /var/run/postgresql /tmp; do
        [[ -S "$dir/.s.PGSQL.$PG_PORT" ]] || continue
        if as_pg "$PG_BIN/psql" -X -q -tA -v ON_ERROR_STOP=1 -h "$dir" -p "$PG_PORT" -d postgres \
            -c "$sql" 2>>"$STATE_DIR/psql-admin.log"; then
            return 0
        fi
    done
    return 1
}

pg_ensure_role_and_db() {
    pg_login_ok && return 0
    local role_sql db_sql owner_sql exists
    role_sql="DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  ELSE
    ALTER ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  END IF;
END
\$\$;"
    db_sql="CREATE DATABASE $PG_DB OWNER $PG_USER"
    owner_sql="ALTER DATABASE $PG_DB OWNER TO $PG_USER"
    pg_admin_sql "$role_sql" >/dev/null ||
        die "PostgreSQL on $HOST:$PG_PORT refuses '$PG_USER' and this script has no superuser access to it (see $STATE_DIR/psql-admin.log); create role '$PG_USER' (LOGIN CREATEDB, password '$PG_PASSWORD') and database '$PG_DB' owned by it"
    exists="$(pg_admin_sql "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" ||
        die "could not look up database $PG_DB"
    if [[ "$exists" != "1" ]]; then
        pg_admin_sql "$db_sql" >/dev/null || die "could not create database $PG_DB"
    else
        pg_admin_sql "$owner_sql" >/dev/null || die "could not give database $PG_DB to $PG_USER"
    fi
    pg_login_ok || die "role $PG_USER still cannot log in to $PG_DB over TCP with its password; check pg_hba.conf of the server on $HOST:$PG_PORT"
    add_action PG_ACTIONS "role+db"
}

up_postgres() {
    PG_ACTIONS=""
    if ! find_pg_bin; then
        apt_install postgresql
        find_pg_bin || die "apt-get installed postgresql but no /usr/lib/postgresql/*/bin/postgres exists"
        add_action PG_ACTIONS "installed"
    fi
    local where="$HOST:$PG_PORT"
    if pg_ready; then
        if pg_cluster_running; then
            add_action PG_ACTIONS "reused"
            where="$where (data $PG_DATA)"
        else
            add_action PG_ACTIONS "reused"
            where="$where (already running, not managed here)"
        fi
    else
        pg_init_cluster
        pg_start_cluster
        where="$where (data $PG_DATA, log $PG_LOG)"
    fi
    pg_ensure_role_and_db
    report postgres "$PG_ACTIONS" "$where"
}

down_postgres() {
    if ! find_pg_bin; then
        report postgres "not running" "$HOST:$PG_PORT (no server binaries here)"
    elif pg_cluster_running; then
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null ||
            die "pg_ctl stop failed for $PG_DATA (log: $PG_LOG)"
        report postgres "stopped" "$HOST:$PG_PORT (data $PG_DATA kept)"
    elif pg_ready; then
        report postgres "left running" "$HOST:$PG_PORT (not started by this script)"
    else
        report postgres "not running" "$HOST:$PG_PORT"
    fi
}

# ---------------------------------------------------------------------------
# Redis

redis_ping() {
    command -v redis-cli >/dev/null && [[ "$(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]
}

up_redis() {
    local acts="" where="$HOST:$REDIS_PORT" i
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        apt_install redis-server
        command -v redis-server >/dev/null || die "apt-get installed redis-server but it is not on PATH"
        add_action acts "installed"
    fi
    if redis_ping; then
        add_action acts "reused"
        if pid_alive "$REDIS_PID" redis-server >/dev/null; then
            where="$where (dir $REDIS_DIR)"
        else
            where="$where (already running, not managed here)"
        fi
    else
        mkdir -p "$REDIS_DIR"
        rm -f "$REDIS_PID"
        # Pub/sub carries the data here; nothing needs to survive a restart.
        if ! redis-server --bind "$HOST" --port "$REDIS_PORT" --daemonize yes \
            --dir "$REDIS_DIR" --logfile "$REDIS_LOG" --pidfile "$REDIS_PID" \
            --save "" --appendonly no >/dev/null 2>&1 9>&-; then
            show_tail "$REDIS_LOG"
            die "redis-server did not start (log: $REDIS_LOG)"
        fi
        for ((i = 0; i < 100; i++)); do
            redis_ping && break
            sleep 0.1
        done
        if ! redis_ping; then
            show_tail "$REDIS_LOG"
            die "Redis does not answer PING on $HOST:$REDIS_PORT; is another program on that port? (log: $REDIS_LOG)"
        fi
        add_action acts "started"
        where="$where (dir $REDIS_DIR, log $REDIS_LOG)"
    fi
    report redis "$acts" "$where"
}

# ---------------------------------------------------------------------------
# anvil

# Prints the JSON-RPC result of a parameterless method, or fails.
eth_call0() {
    local out
    out="$(curl -s -m 2 -X POST -H 'content-type: application/json' \
        --data "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":[]}" \
        "$ETH_RPC_URL" 2>/dev/null)" || return 1
    [[ "$out" =~ \"result\":\"(0x[0-9a-fA-F]*)\" ]] || return 1
    echo "${BASH_REMATCH[1]}"
}

anvil_answers() {
    command -v curl >/dev/null && eth_call0 eth_chainId >/dev/null
}

# The native binary that the npm package ships in its platform package.
anvil_native_path() {
    local arch
    case "$(uname -m)" in
        x86_64 | amd64) arch=amd64 ;;
        aarch64 | arm64) arch=arm64 ;;
        *) die "anvil from npm has no binary for $(uname -m)" ;;
    esac
    echo "$ANVIL_NPM_DIR/node_modules/@foundry-rs/anvil-linux-$arch/bin/anvil"
}

npm_pkg_version() {
    local file="$1"
    [[ -r "$file" ]] || return 1
    sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' "$file" | head -n 1
}

# Installs @foundry-rs/anvil at the pinned version into the cache (once) and
# links the native binary to $ANVIL_BIN. Prints "installed" when it installed.
ensure_anvil_bin() {
    local native wrapper_pkg native_pkg
    native="$(anvil_native_path)"
    wrapper_pkg="$ANVIL_NPM_DIR/node_modules/@foundry-rs/anvil/package.json"
    native_pkg="$(dirname "$(dirname "$native")")/package.json"
    if [[ "$(npm_pkg_version "$wrapper_pkg" || true)" != "$ANVIL_VERSION" ||
        "$(npm_pkg_version "$native_pkg" || true)" != "$ANVIL_VERSION" || ! -x "$native" ]]; then
        mkdir -p "$ANVIL_NPM_DIR" "$STATE_DIR"
        # The binary arrives in the platform package (an optional dependency); the
        # wrapper's postinstall is only a fallback downloader and is not needed.
        if ! npm install --prefix "$ANVIL_NPM_DIR" --no-audit --no-fund --ignore-scripts \
            --loglevel=error "@foundry-rs/anvil@$ANVIL_VERSION" >>"$INSTALL_LOG" 2>&1; then
            show_tail "$INSTALL_LOG"
            die "npm install @foundry-rs/anvil@$ANVIL_VERSION failed (log: $INSTALL_LOG)"
        fi
        [[ -x "$native" ]] || die "npm installed @foundry-rs/anvil@$ANVIL_VERSION but its platform binary $native is missing"
        "$native" --version 2>/dev/null | grep -q "$ANVIL_VERSION" ||
            die "$native --version does not report $ANVIL_VERSION"
        echo installed
    fi
    if [[ "$(readlink "$ANVIL_BIN" 2>/dev/null || true)" != "$native" ]]; then
        mkdir -p "$(dirname "$ANVIL_BIN")"
        ln -sfn "$native" "$ANVIL_BIN"
    fi
}

up_anvil() {
    local acts="" where="$ETH_RPC_URL" chain pid i installed
    command -v curl >/dev/null || apt_install curl
    installed="$(ensure_anvil_bin)"
    [[ -n "$installed" ]] && add_action acts "installed $ANVIL_VERSION"
    if chain="$(eth_call0 eth_chainId)"; then
        add_action acts "reused"
        if pid_alive "$ANVIL_PID" anvil >/dev/null; then
            where="$where chain $((chain))"
        else
            where="$where chain $((chain)) (already running, not managed here)"
        fi
    else
        mkdir -p "$ANVIL_DIR"
        # A new session: anvil's chain lives in memory and restarts from block 0.
        setsid "$ANVIL_BIN" --host "$HOST" --port "$ANVIL_PORT" --block-time 1 \
            </dev/null >"$ANVIL_LOG" 2>&1 9>&- &
        pid=$!
        echo "$pid" >"$ANVIL_PID"
        for ((i = 0; i < 200; i++)); do
            chain="$(eth_call0 eth_chainId)" && break
            if ! proc_running "$pid"; then
                rm -f "$ANVIL_PID"
                show_tail "$ANVIL_LOG"
                die "anvil exited at start; is another program on port $ANVIL_PORT? (log: $ANVIL_LOG)"
            fi
            sleep 0.1
        done
        if [[ -z "${chain:-}" ]]; then
            show_tail "$ANVIL_LOG"
            die "anvil does not answer on $ETH_RPC_URL after 20 s (pid $pid, log: $ANVIL_LOG)"
        fi
        add_action acts "started"
        where="$where chain $((chain)) (pid $pid, log $ANVIL_LOG)"
    fi
    report anvil "$acts" "$where"
}

# ---------------------------------------------------------------------------
# Node.js and the contracts' npm dependencies

up_node() {
    local acts=""
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        apt_install nodejs npm
        add_action acts "installed"
    else
        add_action acts "reused"
    fi
    report node "$acts" "node $(node --version), npm $(npm --version 2>/dev/null)"
}

up_contracts() {
    local dir="$REPO_ROOT/contracts"
    local lock="$dir/package-lock.json" stamp="$dir/node_modules/.package-lock.json"
    if [[ ! -f "$lock" ]]; then
        report contracts "skipped" "no contracts/package-lock.json"
        return 0
    fi
    if [[ -f "$stamp" && ! "$lock" -nt "$stamp" ]]; then
        report contracts "reused" "contracts/node_modules is up to date with its lock"
        return 0
    fi
    mkdir -p "$STATE_DIR"
    if ! npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >>"$INSTALL_LOG" 2>&1; then
        show_tail "$INSTALL_LOG"
        die "npm ci in contracts/ failed (log: $INSTALL_LOG)"
    fi
    report contracts "installed" "npm ci in contracts/"
}

# ---------------------------------------------------------------------------
# Chromium, driven headless by the dashboard test (tests/js/dashboard-check.mjs)

# ---------------------------------------------------------------------------
# Kafka-protocol broker (tansu, a Rust Kafka broker from crates.io)

KAFKA_DIR="$STATE_DIR/kafka"
KAFKA_PID="$KAFKA_DIR/tansu.pid"
KAFKA_LOG="$KAFKA_DIR/tansu.log"

kafka_answers() {
    (exec 3<>"/dev/tcp/$HOST/$KAFKA_PORT") 2>/dev/null
}

# Builds the pinned broker once (about 12 minutes on 2 cores) and reuses it.
ensure_tansu_bin() {
    if [[ -x "$TANSU_BIN" ]] && "$TANSU_BIN" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
        return 0
    fi
    echo "kafka      building tansu $TANSU_VERSION with cargo (once; about 12 minutes)" >&2
    mkdir -p "$STATE_DIR"
    if ! cargo install tansu --locked --version "$TANSU_VERSION" \
        --features dynostore,libsql >>"$INSTALL_LOG" 2>&1; then
        show_tail "$INSTALL_LOG"
        die "cargo install tansu failed (log: $INSTALL_LOG)"
    fi
    echo installed
}

up_kafka() {
    local acts="" where="$HOST:$KAFKA_PORT" pid i installed
    installed="$(ensure_tansu_bin)"
    [[ -n "$installed" ]] && add_action acts "installed tansu $TANSU_VERSION"
    if kafka_answers; then
        add_action acts "reused"
        pid_alive "$KAFKA_PID" tansu >/dev/null || where="$where (already running, not managed here)"
    else
        mkdir -p "$KAFKA_DIR"
        # SQLite storage keeps topics, messages and committed offsets across
        # restarts of the broker. tansu reads the file path relative to its
        # working directory, so it runs in the data directory.
        (cd "$KAFKA_DIR" && exec setsid "$TANSU_BIN" broker \
            --listener-url "tcp://$HOST:$KAFKA_PORT" \
            --advertised-listener-url "tcp://$HOST:$KAFKA_PORT" \
            --storage-engine "sqlite://tansu.db" \
            </dev/null >"$KAFKA_LOG" 2>&1 9>&-) &
        pid=$!
        echo "$pid" >"$KAFKA_PID"
        for ((i = 0; i < 200; i++)); do
            kafka_answers && break
            if ! proc_running "$pid"; then
                rm -f "$KAFKA_PID"
                show_tail "$KAFKA_LOG"
                die "tansu exited at start; is another program on port $KAFKA_PORT? (log: $KAFKA_LOG)"
            fi
            sleep 0.1
        done
        kafka_answers || die "tansu does not accept connections on $where (log: $KAFKA_LOG)"
        add_action acts "started"
        where="$where (pid $pid, data $KAFKA_DIR, log $KAFKA_LOG)"
    fi
    report kafka "$acts" "$where"
}

CHROMIUM_BIN=/usr/bin/chromium

up_chromium() {
    local acts="" version
    if [[ ! -x "$CHROMIUM_BIN" ]]; then
        apt_install chromium
        [[ -x "$CHROMIUM_BIN" ]] || die "apt-get installed chromium but $CHROMIUM_BIN is missing"
        add_action acts "installed"
    else
        add_action acts "reused"
    fi
    version="$("$CHROMIUM_BIN" --version 2>/dev/null | head -n 1)" || version=""
    report chromium "$acts" "$CHROMIUM_BIN${version:+ ($version)}"
}

# ---------------------------------------------------------------------------
# subcommands

cmd_up() {
    take_lock
    up_node
    up_postgres
    up_redis
    up_anvil
    up_kafka
    up_contracts
    up_chromium
}

cmd_down() {
    take_lock
    stop_pidfile anvil "$ANVIL_PID" anvil "$ETH_RPC_URL" anvil_answers
    stop_pidfile kafka "$KAFKA_PID" tansu "$HOST:$KAFKA_PORT" kafka_answers
    stop_pidfile redis "$REDIS_PID" redis-server "$HOST:$REDIS_PORT" redis_ping
    down_postgres
}

cmd_status() {
    local failed=0 chain block note
    if find_pg_bin && pg_ready; then
        note="analytics login ok"
        pg_login_ok || note="analytics login FAILED"
        if pg_cluster_running; then note="$note; managed, data $PG_DATA"; else note="$note; not managed here"; fi
        report postgres up "$HOST:$PG_PORT ($note)"
    else
        report postgres down "$HOST:$PG_PORT"
        failed=1
    fi
    if command -v redis-cli >/dev/null && redis_ping; then
        note="not managed here"
        pid_alive "$REDIS_PID" redis-server >/dev/null && note="managed, dir $REDIS_DIR"
        report redis up "$HOST:$REDIS_PORT ($note)"
    else
        report redis down "$HOST:$REDIS_PORT"
        failed=1
    fi
    if command -v curl >/dev/null && chain="$(eth_call0 eth_chainId)"; then
        block="$(eth_call0 eth_blockNumber || echo 0x0)"
        note="not managed here"
        pid_alive "$ANVIL_PID" anvil >/dev/null && note="managed, pid $(cat "$ANVIL_PID")"
        report anvil up "$ETH_RPC_URL chain $((chain)) block $((block)) ($note)"
    else
        report anvil down "$ETH_RPC_URL"
        failed=1
    fi
    if kafka_answers; then
        note="not managed here"
        pid_alive "$KAFKA_PID" tansu >/dev/null && note="managed, pid $(cat "$KAFKA_PID"), data $KAFKA_DIR"
        report kafka up "$HOST:$KAFKA_PORT ($note)"
    else
        report kafka down "$HOST:$KAFKA_PORT"
        failed=1
    fi
    return "$failed"
}

cmd_env() {
    cat <<EOF
export DATABASE_URL='$DATABASE_URL'
export REDIS_URL='$REDIS_URL'
export ETH_RPC_URL='$ETH_RPC_URL'
export ANVIL_BIN='$ANVIL_BIN'
export KAFKA_BROKERS='$HOST:$KAFKA_PORT'
EOF
}

case "${1:-up}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    -h | --help | help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown subcommand '$1' (use up, down, status or env)" ;;
esac
