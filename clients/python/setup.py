"""Generates the protobuf stubs (generate.py) before setuptools copies the package, so
that an installed ordo_client carries stubs made from this checkout's proto files."""

import pathlib
import sys

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithStubs(build_py):
    def run(self):
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
        import generate

        if not generate.up_to_date():
            generate.generate()
        super().run()


setup(cmdclass={"build_py": BuildWithStubs})
