#!/bin/bash
# Install Debian packages without starting their services: docker.io and docker-registry would otherwise
# start a system dockerd (which rewrites iptables) and a registry on port 5000; tests start their own.
set -euo pipefail
[ "$#" -gt 0 ] || exit 0
ours=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    ours=1
fi
trap '[ -n "$ours" ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
