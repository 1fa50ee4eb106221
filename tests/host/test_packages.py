# SPDX-License-Identifier: MIT
"""The Python packages as a Python user gets them: `python -m build` makes
the sdist from this checkout, pip the wheel from that sdist (as for a
user who installs the sdist), and the wheel, installed in a fresh venv,
imports its compiled shim and runs its console scripts.  The wheel holds
the package, its compiled shim and py.typed, not what builds the shim.

The same for the client (client/, the vmgenid distribution), with no
compiler anywhere: no cc or gcc on PATH, CC=false.  Its wheel is pure
Python, and installed alone in a fresh venv its command and `import
vmgenid` work; the daemon's venv gets it as the daemon's dependency.
One build of each for the whole module (about half a minute)."""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

from tests.harness.cache import REPO_ROOT
from vmgenid import version

# What the build writes into the sdist besides files from git.
GENERATED = {"PKG-INFO", "setup.cfg", "cuse_vmgenid/_version.py"}
CLIENT_GENERATED = {"PKG-INFO", "setup.cfg", "vmgenid/_version.py"}
CONSOLE_SCRIPTS = ("cuse-vmgenid", "vmgenid")
# What the wheel may hold: modules, the compiled shim, the PEP 561 marker,
# the metadata.
WHEEL_FILE = re.compile(r"cuse_vmgenid/(\w+/)*\w+\.py|cuse_vmgenid/_cuse\..*\.so"
                        r"|cuse_vmgenid/py\.typed|cuse_vmgenid-[^/]+\.dist-info/.*")
# The client's: its modules, the marker and the metadata, nothing else.
CLIENT_WHEEL_FILE = re.compile(r"vmgenid/\w+\.py|vmgenid/py\.typed"
                               r"|vmgenid-[^/]+\.dist-info/.*")


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


def no_compiler_env(tmp_path_factory) -> dict:
    """clean_env() with no compiler to be found: PATH a folder with git
    only (the version; pip and the build backend run through
    sys.executable), CC and CXX false."""
    folder = tmp_path_factory.mktemp("no-compiler-on-path")
    (folder / "git").symlink_to(shutil.which("git"))
    return {**clean_env(), "PATH": str(folder), "CC": "false",
            "CXX": "false", "LDSHARED": "false"}


def tracked(*under: str) -> set[str]:
    out = run(["git", "-C", REPO_ROOT, "ls-files", "-z", "--", *under])
    return set(filter(None, out.stdout.split("\0")))


def build_sdist(source, out, env) -> pathlib.Path:
    run([sys.executable, "-m", "build", "--sdist", "--outdir", out,
         source], env=env, cwd=out)
    path, = out.glob("*.tar.gz")
    return path


def build_wheel(sdist, out, env) -> pathlib.Path:
    """The wheel pip builds from @sdist, as for a user who installs it."""
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
         "--disable-pip-version-check", "--wheel-dir", out, sdist],
        env=env, cwd=out)
    path, = out.glob("*.whl")
    return path


def files_of(sdist) -> set[str]:
    """The sdist's files, relative to its top directory."""
    with tarfile.open(sdist) as tar:
        names = [member.name for member in tar.getmembers()
                 if member.isfile()]
    top = names[0].split("/")[0]
    assert all(name.startswith(top + "/") for name in names)
    return {name[len(top) + 1:] for name in names}


def fresh_venv(path, wheel, env, *pip_args) -> pathlib.Path:
    """A fresh venv at @path with @wheel installed (and its
    dependencies)."""
    run([sys.executable, "-m", "venv", path], env=env)
    run([path / "bin" / "python", "-m", "pip", "install", "-q",
         "--disable-pip-version-check", *pip_args, wheel], env=env,
        cwd=path)
    return path


@pytest.fixture(scope="module")
def client_sdist(tmp_path_factory):
    return build_sdist(REPO_ROOT / "client", tmp_path_factory.mktemp(
        "client-sdist"), no_compiler_env(tmp_path_factory))


@pytest.fixture(scope="module")
def client_wheel(client_sdist, tmp_path_factory):
    return build_wheel(client_sdist, tmp_path_factory.mktemp("client-wheel"),
                       no_compiler_env(tmp_path_factory))


@pytest.fixture(scope="module")
def client_venv(client_wheel, tmp_path_factory):
    """The client alone in a fresh venv, installed with no compiler."""
    return fresh_venv(tmp_path_factory.mktemp("client-venv"), client_wheel,
                      no_compiler_env(tmp_path_factory))


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    return build_sdist(REPO_ROOT, tmp_path_factory.mktemp("sdist"),
                       clean_env())


@pytest.fixture(scope="module")
def wheel(sdist, tmp_path_factory):
    return build_wheel(sdist, tmp_path_factory.mktemp("wheel"), clean_env())


@pytest.fixture(scope="module")
def sdist_files(sdist) -> set[str]:
    return files_of(sdist)


@pytest.fixture(scope="module")
def wheel_files(wheel) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


@pytest.fixture(scope="module")
def venv(wheel, client_wheel, tmp_path_factory):
    """A fresh venv with the wheel installed, and its dependencies: the
    client's wheel from this checkout, the others from the index."""
    return fresh_venv(tmp_path_factory.mktemp("venv"), wheel, clean_env(),
                      "--find-links", client_wheel.parent)


def test_the_sdist_holds_what_the_build_reads(sdist_files):
    needed = tracked("native/shim", "native/include", "cuse_vmgenid",
                     "setup.py", "pyproject.toml", "README.rst", "LICENSE",
                     "client/vmgenid/version.py")
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


def test_the_daemon_requires_the_client_of_its_release(wheel):
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(archive.read(name).decode()
                        for name in archive.namelist()
                        if name.endswith(".dist-info/METADATA"))
    assert f"Requires-Dist: vmgenid=={version.RELEASE}\n" in metadata


# -- the client: vmgenid, pure Python, no compiler ----------------------------

def test_the_client_sdist_holds_its_tree_and_only_that(client_sdist):
    files = {name for name in files_of(client_sdist)
             if not name.startswith("vmgenid.egg-info/")}
    ours = {name[len("client/"):] for name in tracked("client")}
    assert files - CLIENT_GENERATED - ours == set()
    assert ours - files == set()


def test_the_client_wheel_is_pure_python_modules_py_typed_and_metadata(
        client_wheel):
    assert client_wheel.name.endswith("-py3-none-any.whl"), client_wheel
    with zipfile.ZipFile(client_wheel) as archive:
        names = set(archive.namelist())
    assert "vmgenid/py.typed" in names
    assert {name for name in names
            if not CLIENT_WHEEL_FILE.fullmatch(name)} == set()


def client_run(client_venv, tmp_path_factory, *command: str, **kwargs):
    """@command run in the client's venv, from its folder, with no
    compiler on PATH."""
    env = no_compiler_env(tmp_path_factory)
    env["PATH"] = f"{client_venv / 'bin'}:{env['PATH']}"
    return subprocess.run(list(command), env=env, cwd=client_venv, text=True,
                          capture_output=True, **kwargs)


def test_the_client_alone_imports_without_the_daemon_or_cffi(
        client_sdist, client_venv, tmp_path_factory):
    proc = client_run(client_venv, tmp_path_factory, "python", "-c", """
import importlib.util, sys
import vmgenid, vmgenid.tool
print(vmgenid.__file__)
print(vmgenid.__version__)
print(sorted(name for name in ("cffi", "_cffi_backend", "cuse_vmgenid")
             if importlib.util.find_spec(name) or name in sys.modules))
""")
    assert proc.returncode == 0, proc.stderr
    where, built, others = proc.stdout.splitlines()
    assert where.startswith(str(client_venv) + "/"), where
    # vmgenid-<version>.tar.gz
    assert client_sdist.name == f"vmgenid-{built}.tar.gz"
    assert others == "[]"


def test_the_client_s_command_runs_alone(client_venv, tmp_path_factory):
    version = client_run(client_venv, tmp_path_factory, "vmgenid",
                         "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("vmgenid "), version.stdout
    # No daemon: one line and the documented exit code, no traceback.
    status = client_run(client_venv, tmp_path_factory, "vmgenid", "status",
                        "--status-file", str(client_venv / "none.json"))
    assert (status.returncode, status.stdout) == (3, ""), status
    assert status.stderr.count("\n") == 1, status.stderr
    assert "cuse-vmgenid is not running" in status.stderr
