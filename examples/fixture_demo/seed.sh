#!/bin/sh
# The fixture's setup: runs once in a guest VM, which kiln then saves. Starts Redis
# (in memory only) and seeds it; every test restores the VM with the server running.
set -e
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
i=0
until redis-cli ping >/dev/null 2>&1; do
  i=$((i + 1))
  if [ "$i" -gt 200 ]; then echo "seed.sh: redis-server did not start listening" >&2; exit 1; fi
  sleep 0.1
done
redis-cli SET greeting "hello from the fixture" >/dev/null
redis-cli SET visits 100 >/dev/null
redis-cli RPUSH menu espresso lungo ristretto >/dev/null
echo "seed.sh: redis is up and seeded"
