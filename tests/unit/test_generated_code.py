"""The committed wire code is exactly what the .proto files generate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_regenerating_the_protos_changes_nothing(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    generated = sorted(p.name for p in (tmp_path / "hodei" / "v1").iterdir())
    committed_dir = ROOT / "src" / "hodei" / "v1"
    committed = sorted(p.name for p in committed_dir.iterdir() if p.suffix in (".py", ".pyi"))
    assert [name for name in committed if name != "__init__.py"] == generated
    for name in generated:
        fresh = (tmp_path / "hodei" / "v1" / name).read_text()
        assert fresh == (committed_dir / name).read_text(), f"{name} is stale: run make proto"
