"""The README's Python example runs; docs/api.md is generated from the current docstrings."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert (tmp_path / "dw4_idem.dcd").is_file() and (tmp_path / "dw4_idem.pdb").is_file()
    assert namespace["samples"].positions.shape == (1000, 4, 2)
    assert "energy_w2" in namespace["report"].metrics


def test_readme_has_two_setup_commands_and_ci_runs_the_test_command():
    text = (ROOT / "README.md").read_text()
    bash = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    assert any("idem-md demo" in b for b in bash) and any("pytest" in b for b in bash)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest -q" in ci and "python -m pytest -q" in text


def test_api_reference_is_current():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "generate_api_docs.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
