# The two entry points of README.rst.
PYTHON := .venv/bin/python

.PHONY: bootstrap demo test host-test guest-test deb clean

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

# The Debian package, from the committed tree, into build/deb/.
deb:
	tools/build-deb

clean:
	rm -rf build .cache cuse_vmgenid/_cuse*.so
	$(MAKE) -C native clean
