# SPDX-License-Identifier: MIT
# The two entry points of README.rst.
PYTHON := .venv/bin/python

.PHONY: bootstrap demo test host-test guest-test lint deb bench clean

bootstrap:
	tools/bootstrap

demo: bootstrap
	$(PYTHON) tools/demo.py

test: bootstrap
	$(PYTHON) tools/run-tests

host-test: bootstrap
	$(PYTHON) -m pytest tests/host -q

guest-test: bootstrap
	$(PYTHON) tools/run-tests --guest-only

# The lint step of `make test` alone (pyproject.toml [tool.ruff]).
lint: bootstrap
	.venv/bin/ruff check .

# The Debian package, from the committed tree, into build/deb/.
deb:
	tools/build-deb

# The benchmark suite (issue #6): one table, docs/benchmarks.rst and .png.
# It takes /tmp/vmgenid-qemu.lock itself.  BENCH_ARGS=--quick for a short run.
bench: bootstrap
	$(PYTHON) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf build .cache cuse_vmgenid/_cuse*.so
	$(MAKE) -C native clean
