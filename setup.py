from setuptools import find_packages, setup

setup(
    name="cuse-vmgenid",
    version="0.1.0",
    description="VM Generation ID device (/dev/vmgenid) served from "
                "userspace through CUSE",
    packages=find_packages(include=["cuse_vmgenid", "cuse_vmgenid.*"]),
    package_data={"cuse_vmgenid": ["decl/*.h", "decl/*.c"]},
    python_requires=">=3.11",
    setup_requires=["cffi>=1.15"],
    install_requires=["cffi>=1.15"],
    cffi_modules=["cuse_vmgenid/_build.py:ffibuilder"],
    entry_points={
        "console_scripts": ["cuse-vmgenid = cuse_vmgenid.cli:main",
                            "vmgenid = cuse_vmgenid.tool:main"],
    },
)
