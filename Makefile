# Top-level entry points. `make demo` and `make test` are the README's two commands.
SHELL := /bin/bash
PY ?= python3
ARGS ?=

.PHONY: demo test deps deps-qemu lint unit netns guest-test image bench fuzz drills clean

demo: deps-qemu image
	$(PY) -m qemu.demo $(ARGS)

# Every test: lint, pure unit tests, host namespace tests (root), then the in-guest tests.
test: deps-qemu lint unit netns guest-test

deps:
	scripts/deps.sh host

deps-qemu:
	scripts/deps.sh host qemu

lint:
	$(PY) -m ruff check router tests qemu bench
	$(PY) -m mypy

unit:
	$(PY) -m pytest -q tests/unit

netns:
	@if [ "$$(id -u)" = 0 ]; then $(PY) -m pytest -q tests/netns; \
	else echo "netns: SKIPPED (needs root)"; exit 1; fi

# Build the guest image, or reuse the cached one (keyed by a hash of its inputs).
image:
	scripts/deps.sh qemu
	qemu/build-image.sh

# Boot the image and run tests/qemu inside; junit lands in out/junit-guest.xml.
guest-test: image
	$(PY) -m qemu.run --tests tests/qemu --junitxml=/out/junit-guest.xml $(ARGS)

bench: deps-qemu image
	$(PY) -m bench $(ARGS)

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache bench/results/*.json
