# Top-level entry points. `make demo` and `make test` are the README's two commands.
SHELL := /bin/bash
PY ?= python3
ARGS ?=

.PHONY: demo test deps deps-qemu deps-all lint unit netns browser guest-test image bench fuzz clean

demo: deps-qemu image
	$(PY) -m qemu.demo $(ARGS)

# Every test: lint, pure unit tests, host namespace tests (root), the status page in headless
# Chromium, then the in-guest tests (data plane, radio, 3G, VPN).
test: deps-all lint unit netns browser guest-test

deps:
	scripts/deps.sh host

deps-qemu:
	scripts/deps.sh host qemu

deps-all:
	scripts/deps.sh host qemu browser

lint:
	$(PY) -m ruff check router tests qemu bench
	$(PY) -m mypy

unit:
	$(PY) -m pytest -q tests/unit

netns:
	@if [ "$$(id -u)" = 0 ]; then $(PY) -m pytest -q tests/netns; \
	else echo "netns: needs root (network namespaces)"; exit 1; fi

# The lab page test boots the guest: the image first (cached, or built once).
browser: image
	$(PY) -m pytest -q tests/browser

# Build the guest image, or reuse the cached one (keyed by a hash of its inputs).
image:
	scripts/deps.sh qemu
	qemu/build-image.sh

# Boot the image and run tests/qemu inside; junit lands in out/junit-guest.xml.
guest-test: image
	$(PY) -m qemu.run --tests tests/qemu --junitxml=/out/junit-guest.xml $(ARGS)

bench: deps-qemu image
	$(PY) -m bench $(ARGS)

# Long fuzzing (atheris when it installs, else Hypothesis): 10^6 executions per parser by
# default; `make fuzz ARGS="--executions 100000 --target mip_decode"` for a shorter run.
fuzz: deps
	$(PY) -m pip install -q --disable-pip-version-check atheris || true
	$(PY) -m tests.fuzz $(ARGS)

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache bench/results/*.json bench/results/*.md

# Fault drills on the single-system product in the lab (issue 9): each drill prints PASS/FAIL
# with its measured recovery time. (Also part of guest-test: they live under tests/qemu.)
.PHONY: drills
drills: image
	$(PY) -m qemu.run --tests tests/qemu/test_drills.py tests/qemu/test_drills_dual.py
