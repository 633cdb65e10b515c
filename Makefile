# Two entry points (see README): `make demo` and `make test`. Both install everything they need first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := python3 python3-venv busybox-static skopeo umoci zstd \
	golang-github-opencontainers-image-spec-dev golang-github-opencontainers-specs-dev \
	crun runc conmon docker-registry apache2-utils iproute2 debootstrap docker.io nftables aardvark-dns buildah \
	qemu-system-x86 e2fsprogs
APT_INSTALL := bash scripts/apt-install.sh
STAMP_APT := $(VENV)/.apt-stamp
STAMP_PIP := $(VENV)/.pip-stamp

.PHONY: install demo test lint bench clean

$(STAMP_APT):
	@mkdir -p $(VENV)
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		$(APT_INSTALL) $(APT_PACKAGES); \
	fi
	@# The micro-VM's guest kernel is fetched with `apt-get download`, which needs package lists.
	@apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1 || apt-get update -q
	@touch $@

# Debian's own interpreter starts ~4x faster than pyenv shims; the CLI's start-up is part of every command.
$(STAMP_PIP): $(STAMP_APT) pyproject.toml
	@test -x $(PY) || /usr/bin/python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --config-settings editable_mode=compat -e '.[dev]'
	ln -sf $(CURDIR)/$(VENV)/bin/intermodal /usr/local/bin/intermodal
	@touch $@

install: $(STAMP_PIP)

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

demo: install
	bash scripts/demo.sh

test: install lint
	$(VENV)/bin/pytest -q tests

# Peers measured beside us; not needed by demo or test.
BENCH_PACKAGES := podman buildah docker.io

bench: install
	@if ! dpkg -s $(BENCH_PACKAGES) >/dev/null 2>&1; then \
		$(APT_INSTALL) $(BENCH_PACKAGES); \
	fi
	env -u PYTHONDONTWRITEBYTECODE $(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
