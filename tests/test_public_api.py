import subprocess
import sys

import connector
import encoders


def test_public_names_exist_and_are_listed() -> None:
    for module in (connector, encoders):
        assert sorted(module.__all__) == module.__all__
        for name in module.__all__:
            assert getattr(module, name) is not None, name


def test_importing_the_package_does_not_import_torch() -> None:
    code = "import connector, encoders, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_either_package_can_be_imported_first() -> None:
    for first in ("encoders", "connector", "connector.errors", "encoders.registry"):
        code = f"import {first}; import connector, encoders; connector.Searcher; print('ok')"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.stdout.strip() == "ok", (first, out.stderr[-500:])
