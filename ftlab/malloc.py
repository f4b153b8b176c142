"""glibc malloc settings for the command-line entry points (`python -m ftlab.main`, `python -m ftlab.sweep`).

XLA:CPU allocates one buffer for all of a step's temporaries (718 MB for MiniLM at 32 x 64, 1.55 GB at 32 x 128)
from a worker thread. glibc serves an allocation that large from the thread's arena with mmap and returns it with
munmap, so every step faults in every page again (about 175,000 minor faults and 0.3 s of system time per step at
32 x 64 on 2 cores). With one arena, no mmap and no trimming, the freed buffer stays in the heap and the next step
reuses it: the MiniLM train step ran 16% (length 64) and 24% (length 128) faster on CPU (benchmarks/minilm_step.py
--tune-malloc). The cost: the process keeps its peak heap (it never returns freed memory to the system), which for
a training process is about its steady size anyway. On GPU or TPU it changes little either way.

The same as MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<huge> in the environment. It must run before
threads allocate (before jax starts its backend); FTLAB_MALLOC=default leaves glibc's defaults. Not glibc (macOS,
musl): nothing happens.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


def tune() -> bool:
  """Applies the settings (see the module docstring); returns whether they were applied."""
  if os.environ.get('FTLAB_MALLOC', '').lower() == 'default':
    return False
  try:
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    mallopt = libc.mallopt
    libc.gnu_get_libc_version  # glibc only
  except (OSError, AttributeError):
    return False
  ok = mallopt(_M_ARENA_MAX, 1) and mallopt(_M_MMAP_MAX, 0)
  return bool(ok and mallopt(_M_TRIM_THRESHOLD, -1))  # -1: SIZE_MAX, never trim
