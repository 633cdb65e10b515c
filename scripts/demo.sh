#!/bin/bash
# The main job (`make demo`): create the embedded base image, show it, and prove it survives a save/load
# round trip into a fresh state root with the same image ID.
set -euo pipefail
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if ! intermodal image inspect busybox:latest >/dev/null 2>&1; then
    say "Bootstrapping busybox:latest from Debian's busybox-static (offline)"
    intermodal image bootstrap busybox
fi

say "intermodal images"
intermodal images

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
say "save busybox:latest as a docker-archive and load it into a fresh root"
intermodal save -o "$scratch/busybox.tar" busybox:latest
intermodal --root "$scratch/root" load -i "$scratch/busybox.tar"
original=$(intermodal image inspect -f '{{.Id}}' busybox:latest)
loaded=$(intermodal --root "$scratch/root" image inspect -f '{{.Id}}' busybox:latest)
echo "original: $original"
echo "loaded:   $loaded"
[ "$original" = "$loaded" ] || { echo "round trip changed the image ID" >&2; exit 1; }
say "run busybox as a container"
intermodal run --rm --name demo-hello busybox sh -c 'echo "hello from $(hostname), pid $$ in its own namespaces"; uname -r'

say "a detached container: run -d, ps, logs, stop, rm"
intermodal run -d --name demo-web busybox sh -c 'echo serving; while true; do sleep 1; done' >/dev/null
intermodal ps
sleep 0.5
intermodal logs demo-web
intermodal stop -t 1 demo-web >/dev/null
intermodal rm demo-web >/dev/null

say "build the bundled example (examples/hello, two stages) from its Dockerfile"
intermodal build -t hello examples/hello

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

say "run it as a container"
start=$(now_ms); intermodal run --rm hello; container_ms=$(( $(now_ms) - start ))

say "serve it on a published port and fetch the page from the host"
port=18080
intermodal run -d --name demo-served -p "127.0.0.1:$port:8080" hello show --serve >/dev/null
trap 'intermodal rm -f demo-served >/dev/null 2>&1 || true; rm -rf "$scratch"' EXIT
intermodal port demo-served
python3 - "$port" <<'PY'
import sys, time, urllib.request
for _ in range(50):
    try:
        print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/page.html", timeout=2).read().decode().strip())
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("the published port did not answer")
PY
intermodal rm -f demo-served >/dev/null

say "run the same image as a micro-VM (QEMU; KVM when it works, else TCG)"
intermodal run --rm --isolation=vm busybox true >/dev/null 2>&1 || true  # first use fetches the guest kernel
start=$(now_ms); intermodal run --rm --isolation=vm hello; vm_ms=$(( $(now_ms) - start ))

say "start-to-exit time of the same image"
printf '  container: %6d ms\n  micro-VM:  %6d ms\n' "$container_ms" "$vm_ms"

say "demo finished"
