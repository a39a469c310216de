#!/usr/bin/env bash
# The demo fleet, offline and without API keys: installs fleet into .venv, makes a
# throwaway git repo, applies fleets/demo.yaml there, waits for the three scripted
# agents to commit, and shows `fleet status` and their commits.
set -euo pipefail
cd "$(dirname "$0")/.."
project=$(pwd)
if [ ! -x .venv/bin/fleet ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q -e .
fi
fleet=$project/.venv/bin/fleet
demo=$(mktemp -d "${TMPDIR:-/tmp}/fleet-demo.XXXXXX")
git init -q -b main "$demo"
echo "# fleet demo repo" > "$demo/README.md"
git -C "$demo" add README.md
git -C "$demo" -c user.name="fleet demo" -c user.email=demo@fleet.invalid commit -q -m "demo repo"
cp fleets/demo.yaml "$demo/fleet.yaml"
cd "$demo"
echo "demo repo: $demo"
"$fleet" validate fleet.yaml
"$fleet" diff fleet.yaml || true          # exit 1 = changes pending
"$fleet" apply fleet.yaml --yes
# level-triggered: keep applying until every agent has finished (caps release slots)
for _ in $(seq 1 60); do
  "$fleet" status fleet.yaml -o json > .git/fleet-demo-status.json
  python3 -c 'import json,sys; a=json.load(open(".git/fleet-demo-status.json"))["agents"]; sys.exit(0 if all(x["phase"] in ("Succeeded","Failed","Blocked") for x in a) else 1)' && break
  sleep 1
  "$fleet" apply fleet.yaml --yes > /dev/null
done
"$fleet" status fleet.yaml
git --no-pager log --oneline --all --graph
