#!/usr/bin/env bash
# Starts the PostgreSQL and Redis the test suite uses (127.0.0.1:5432, 127.0.0.1:6379) if they are down.
set -uo pipefail
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! up 5432; then
    if command -v pg_ctlcluster >/dev/null; then
        echo "sluice: starting PostgreSQL" >&2
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    fi
fi
if ! up 6379; then
    if command -v redis-server >/dev/null; then
        echo "sluice: starting Redis" >&2
        mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
            --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
    fi
fi
for i in $(seq 1 50); do
    if up 5432 && up 6379; then exit 0; fi
    sleep 0.2
done
echo "sluice: warning: PostgreSQL or Redis is not reachable; tests that need them will fail" >&2
