"""The C library keeps freed blocks: large activations are not page-faulted in afresh at every op."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from fusionframes import allocator, bench, cli

ROOT = Path(__file__).resolve().parents[1]
PAGES_64MB = 64 * 2**20 // 4096
FAULTS_OF_30_64MB_OPS = """
import resource, sys, torch
from fusionframes import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
x = torch.ones(64 << 18)  # float32, 64 MB
for _ in range(3):
    x = x + 1
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    x = x + 1  # a fresh 64 MB result, the previous one freed: an activation chain
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _huge_pages_always() -> bool:
    try:
        return "[always]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False


def _faults(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    run = subprocess.run([sys.executable, "-c", FAULTS_OF_30_64MB_OPS, mode], capture_output=True, text=True,
                         check=True, env=env)
    return int(run.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or _huge_pages_always(),
                    reason="glibc's mallopt, counted in 4 kB pages")
def test_freed_large_blocks_are_reused_instead_of_faulted_in_again():
    # 64 MB is above glibc's largest mmap threshold: by default every result is a fresh mapping whose every page
    # faults; kept on the heap, most results land in blocks already faulted in.
    default = _faults("default")
    assert default > 27 * PAGES_64MB
    assert _faults("keep") < default / 2


def test_the_command_keeps_freed_memory_and_main_leaves_its_caller_alone(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append("kept"))
    monkeypatch.setattr(sys, "argv", ["fusionframes", "params", "kandinsky3-unet"])
    assert cli.main(["params", "kandinsky3-unet"]) == 0 and calls == []
    assert cli.run() == 0 and calls == ["kept"]


MODULE_COMMAND = """
import runpy, sys
from fusionframes import allocator
sys.argv = ["fusionframes", "params", "kandinsky3-unet"]
try:
    runpy.run_module("fusionframes", run_name="__main__")
except SystemExit as done:
    print(done.code, allocator.enabled)
"""


def test_python_dash_m_fusionframes_is_the_command():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", MODULE_COMMAND], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.splitlines()[-1] == f"0 {platform.libc_ver()[0] == 'glibc'}"


def _report_allocator(queue) -> None:
    queue.put(dict(enabled=allocator.enabled))


def test_benchmark_children_run_with_the_parents_setting(monkeypatch):
    for enabled in (False, True):
        monkeypatch.setattr(allocator, "enabled", enabled)
        assert bench.in_fresh_process(_report_allocator, (), "the probe")["enabled"] is enabled
