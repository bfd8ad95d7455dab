"""Package discovery for the four source roots (see pyproject.toml for everything else).

The repository shows the layers side by side (graphc/, ir/, codegen/, runtime/) and installs
them as one package, ``graphc`` with ``graphc.ir``, ``graphc.codegen`` and ``graphc.runtime``.
Every folder with an ``__init__.py`` below a root is a package of the wheel: none is listed by
hand, so a new subpackage cannot be left out of a normal (non-editable) install.
"""
from setuptools import find_packages, setup

ROOTS = {"graphc": "graphc", "graphc.ir": "ir", "graphc.codegen": "codegen",
         "graphc.runtime": "runtime"}


def _packages():
    packages = []
    for name, folder in ROOTS.items():
        packages.append(name)
        packages += [f"{name}.{sub}" for sub in find_packages(folder)]
    return packages


setup(packages=_packages(), package_dir=dict(ROOTS))
