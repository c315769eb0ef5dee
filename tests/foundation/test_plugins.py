"""Plugins from the ``kiln.plugins`` entry-point group of a really installed distribution."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def _install_dist(site: Path, entry_points: str, modules: dict[str, str]) -> None:
    """Lay out an installed distribution (dist-info + modules) in ``site``."""
    info = site / "kiln_test_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kiln-test-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for rel, text in modules.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


HOST = """
    from kiln.registry import Registry
    THINGS = Registry('thing', scope='host')
"""


def _run(site: Path, code: str) -> subprocess.CompletedProcess:
    env_code = f"import sys; sys.path.insert(0, {str(site)!r})\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", env_code], capture_output=True, text=True)


def test_installed_plugin_registers_without_any_import(tmp_path):
    _install_dist(tmp_path, """
        [kiln.plugins]
        shapes = kiln_test_plugin.things
        setup = kiln_test_plugin.setup:register_more
    """, {
        "host_reg.py": HOST,
        "kiln_test_plugin/__init__.py": "",
        "kiln_test_plugin/things.py": """
            from host_reg import THINGS

            @THINGS.register_module()
            class PluginThing:
                pass
        """,
        "kiln_test_plugin/setup.py": """
            def register_more():
                from host_reg import THINGS
                THINGS.register_module(name='FromSetup', module=dict)
        """,
    })
    out = _run(tmp_path, """
        import sys, host_reg
        assert 'kiln_test_plugin.things' not in sys.modules
        print(host_reg.THINGS.build(dict(type='PluginThing')).__class__.__name__)
        print(host_reg.THINGS.get('FromSetup') is dict)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["PluginThing", "True"]


def test_broken_plugin_warns_and_does_not_break_lookups(tmp_path):
    _install_dist(tmp_path, """
        [kiln.plugins]
        broken = kiln_test_plugin.missing_module
    """, {"host_reg.py": HOST, "kiln_test_plugin/__init__.py": ""})
    out = _run(tmp_path, """
        import logging, host_reg
        logging.basicConfig(level=logging.WARNING)
        print(host_reg.THINGS.get('Nothing'))
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"
    assert "kiln plugin 'broken'" in out.stderr and "failed to load" in out.stderr
