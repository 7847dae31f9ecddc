"""The scheduling core must stay pure: no torch, no redis, no asyncio (the simulator drives it)."""

import subprocess
import sys

BLOCKED = ("torch", "redis", "asyncio", "numpy", "fastapi")

SCRIPT = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {BLOCKED!r}:
            raise ImportError('scheduling core imported ' + name)
sys.meta_path.insert(0, Block())
import workers.sched.scheduler, workers.sched.plan, workers.sched.state
print('pure')
"""


def test_scheduler_core_imports_no_torch_redis_or_asyncio() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "pure"
