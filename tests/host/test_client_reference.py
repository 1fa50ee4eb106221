# SPDX-License-Identifier: MIT
"""docs/client.rst, the Python client's reference, is what
tools/client-reference writes from client/vmgenid/__init__.py, and names
every public name of the module and of its classes."""

import importlib.machinery
import importlib.util
import inspect
import os
import re
import types

import vmgenid as client

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def read(path: str) -> str:
    with open(os.path.join(REPO, path)) as f:
        return f.read()


def generator():
    path = os.path.join(REPO, "tools", "client-reference")
    loader = importlib.machinery.SourceFileLoader("client_reference", path)
    module = importlib.util.module_from_spec(
        importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def public_names() -> set:
    """Every name the module defines without a leading underscore: not a
    module, not a name imported from elsewhere."""
    names = set()
    for name, value in vars(client).items():
        if name.startswith("_") or isinstance(value, types.ModuleType):
            continue
        origin = getattr(value, "__module__", client.__name__)
        if inspect.isclass(value) or inspect.isfunction(value):
            origin = value.__module__
        elif not isinstance(value, (int, str, tuple)):
            continue            # typing's names
        if origin == client.__name__:
            names.add(name)
    return names


def test_all_is_every_public_name_of_the_module():
    assert sorted(client.__all__) == sorted(public_names())


def test_the_page_is_what_the_generator_writes():
    assert read("docs/client.rst") == generator().render(), \
        "docs/client.rst is stale: run tools/client-reference"


def test_the_page_names_every_public_name_and_member():
    page = read("docs/client.rst")
    terms = set(re.findall(r"^ *``(?:class |async |vmgenid\.)?(\w+)",
                           page, re.M))
    for name in client.__all__:
        assert name in terms, name
        value = getattr(client, name)
        if inspect.isclass(value) and not issubclass(value, OSError):
            members = {m for m in vars(value) if not m.startswith("_")}
            assert members <= terms, members - terms
    # The attributes Watcher() sets.
    source = inspect.getsource(client.Watcher.__init__)
    attributes = set(re.findall(r"self\.([a-z]\w*) =", source))
    assert attributes and attributes <= terms, attributes - terms


def test_readme_links_the_reference():
    assert "docs/client.rst" in read("README.rst")
