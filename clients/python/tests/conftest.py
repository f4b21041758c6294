"""Test setup: the package from this checkout, with its stubs generated from this
checkout's proto files (regenerated when the protos changed)."""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import generate  # noqa: E402  (needs ROOT on the path)

if not generate.up_to_date():
    generate.generate()

import os  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def network_path():
    """The network under test: ORDO_NETWORK, a network.json or the directory holding it
    (``ordo up --dir DIR``). Without it the live tests are skipped, unless
    ORDO_REQUIRE_NETWORK is set (as the Rust test that starts the network sets it):
    then they fail, so that a run meant to reach real nodes cannot pass without them."""
    path = os.environ.get("ORDO_NETWORK")
    if not path:
        if os.environ.get("ORDO_REQUIRE_NETWORK"):
            pytest.fail("ORDO_REQUIRE_NETWORK is set but ORDO_NETWORK is not")
        pytest.skip("ORDO_NETWORK is not set (path of an `ordo up` network.json)")
    return pathlib.Path(path)


@pytest.fixture(scope="session")
def ordo_bin():
    """The `ordo` binary whose verdicts the client's are compared with: ORDO_BIN, or
    `ordo` on the PATH."""
    import shutil

    path = os.environ.get("ORDO_BIN") or shutil.which("ordo")
    if not path:
        pytest.fail("no `ordo` binary: set ORDO_BIN or put ordo on the PATH")
    return path
