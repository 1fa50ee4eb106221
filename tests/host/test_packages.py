# SPDX-License-Identifier: MIT
"""The Python packages as a Python user gets them: `python -m build` makes
the sdist from this checkout, pip the wheel from that sdist (as for a
user who installs the sdist), and the wheel, installed in a fresh venv,
imports its compiled shim and runs its console scripts.  The wheel holds
the package, its compiled shim and py.typed, not what builds the shim.
One build of each for the whole module (about half a minute)."""

import os
import re
import subprocess
import sys
import tarfile
import zipfile

import pytest

from tests.harness.cache import REPO_ROOT

# What the build writes into the sdist besides files from git.
GENERATED = {"PKG-INFO", "setup.cfg", "cuse_vmgenid/_version.py"}
CONSOLE_SCRIPTS = ("cuse-vmgenid", "vmgenid")
# What the wheel may hold: modules, the compiled shim, the PEP 561 marker,
# the metadata.
WHEEL_FILE = re.compile(r"cuse_vmgenid/(\w+/)*\w+\.py|cuse_vmgenid/_cuse\..*\.so"
                        r"|cuse_vmgenid/py\.typed|cuse_vmgenid-[^/]+\.dist-info/.*")


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    """@command, its output in the failure's message."""
    proc = subprocess.run([str(arg) for arg in command], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          **kwargs)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, command))}: exit {proc.returncode}\n"
        + proc.stdout[-6000:])
    return proc


def clean_env() -> dict:
    """The environment less what would point a child at this checkout's
    package or preload a sanitizer into the compiler."""
    return {name: value for name, value in os.environ.items()
            if not name.startswith("PYTHON") and name not in
            ("LD_PRELOAD", "ASAN_OPTIONS", "VMGENID_SHIM")}


def tracked(*under: str) -> set[str]:
    out = run(["git", "-C", REPO_ROOT, "ls-files", "-z", "--", *under])
    return set(filter(None, out.stdout.split("\0")))


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    out = tmp_path_factory.mktemp("sdist")
    run([sys.executable, "-m", "build", "--sdist", "--outdir", out,
         REPO_ROOT], env=clean_env(), cwd=out)
    path, = out.glob("*.tar.gz")
    return path


@pytest.fixture(scope="module")
def wheel(sdist, tmp_path_factory):
    """The wheel pip builds from the sdist, as for a user who installs it."""
    out = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
         "--disable-pip-version-check", "--wheel-dir", out, sdist],
        env=clean_env(), cwd=out)
    path, = out.glob("*.whl")
    return path


@pytest.fixture(scope="module")
def sdist_files(sdist) -> set[str]:
    """The sdist's files, relative to its top directory."""
    with tarfile.open(sdist) as tar:
        names = [member.name for member in tar.getmembers()
                 if member.isfile()]
    top = names[0].split("/")[0]
    assert all(name.startswith(top + "/") for name in names)
    return {name[len(top) + 1:] for name in names}


@pytest.fixture(scope="module")
def wheel_files(wheel) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory):
    """A fresh venv with the wheel installed (and its dependencies)."""
    path = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", path], env=clean_env())
    run([path / "bin" / "python", "-m", "pip", "install", "-q",
         "--disable-pip-version-check", wheel], env=clean_env(), cwd=path)
    return path


def test_the_sdist_holds_what_the_build_reads(sdist_files):
    needed = tracked("native/shim", "native/include", "cuse_vmgenid",
                     "setup.py", "pyproject.toml", "README.rst", "LICENSE")
    assert needed - sdist_files == set()


def test_the_sdist_holds_only_files_from_git_and_the_build(sdist_files):
    extra = {name for name in sdist_files - tracked() - GENERATED
             if not name.startswith("cuse_vmgenid.egg-info/")}
    assert extra == set()


def test_the_wheel_holds_modules_the_shim_py_typed_and_metadata_only(
        wheel_files):
    assert "cuse_vmgenid/py.typed" in wheel_files
    assert {name for name in wheel_files
            if not WHEEL_FILE.fullmatch(name)} == set()


def test_the_wheel_holds_no_module_that_builds_the_shim(wheel):
    # The builder imports cffi's FFI; the package needs only the compiled
    # module (and cffi's backend, which that imports).
    with zipfile.ZipFile(wheel) as archive:
        builders = {name for name in archive.namelist()
                    if name.endswith(".py") and re.search(
                        rb"^(from cffi import|import cffi\b)",
                        archive.read(name), re.MULTILINE)}
    assert builders == set()


def test_the_wheel_from_the_sdist_imports_its_shim_in_a_fresh_venv(venv):
    # From the venv's directory: not this checkout's package.
    proc = run([venv / "bin" / "python", "-c",
                "import cuse_vmgenid._cuse as m; print(m.__file__)"],
               env=clean_env(), cwd=venv)
    assert proc.stdout.startswith(str(venv) + "/"), proc.stdout


@pytest.mark.parametrize("script", CONSOLE_SCRIPTS)
def test_the_console_scripts_run_from_the_fresh_venv(venv, script):
    proc = run([venv / "bin" / script, "--help"], env=clean_env(), cwd=venv)
    assert proc.stdout.startswith(f"usage: {script} "), proc.stdout


def test_the_installed_version_is_the_one_built(sdist, venv):
    proc = run([venv / "bin" / "python", "-c",
                "import cuse_vmgenid; print(cuse_vmgenid.__version__)"],
               env=clean_env(), cwd=venv)
    # cuse_vmgenid-<version>.tar.gz
    assert sdist.name == f"cuse_vmgenid-{proc.stdout.strip()}.tar.gz"
