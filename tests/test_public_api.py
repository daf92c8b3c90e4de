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
