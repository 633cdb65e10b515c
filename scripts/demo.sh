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
say "demo finished"
