"""A throwaway PostgreSQL server for the tests: `server(folder)` starts one from the machine's PostgreSQL binaries
(initdb, pg_ctl), listening only on a Unix socket in a folder of its own, and yields its SQLAlchemy URL; it is
stopped and removed after. Skipped, saying why, where no server can be started (no binaries, or running as root
without a 'postgres' user to run it as: PostgreSQL refuses root)."""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile

import pytest


def _binary(name: str) -> str:
  found = shutil.which(name) or next(iter(sorted(glob.glob(f'/usr/lib/postgresql/*/bin/{name}'), reverse=True)), '')
  if not found:
    pytest.skip(f'no PostgreSQL server here ({name} not found); apt-get install postgresql to run this test')
  return found


def _as_server_user() -> list[str]:
  """The command prefix that runs the server as a non-root user ([] when this process is not root)."""
  if os.geteuid() != 0:
    return []
  try:
    pwd.getpwnam('postgres')
  except KeyError:
    pytest.skip("running as root with no 'postgres' user to run PostgreSQL as (it refuses root)")
  return ['runuser', '-u', 'postgres', '--']


@contextlib.contextmanager
def server():
  """Yields the URL of a fresh PostgreSQL server (database 'postgres', user 'ftlab', trust authentication)."""
  pytest.importorskip('psycopg', reason='psycopg (requirements.txt) is not installed')
  initdb, pg_ctl, prefix = _binary('initdb'), _binary('pg_ctl'), _as_server_user()
  folder = tempfile.mkdtemp(prefix='ftlab-pg-')  # short: a socket path has at most 107 characters
  if prefix:
    shutil.chown(folder, 'postgres')
  data = os.path.join(folder, 'data')
  run = lambda *cmd: subprocess.run([*prefix, *cmd], check=True, capture_output=True, text=True)
  try:
    run(initdb, '-D', data, '-A', 'trust', '-U', 'ftlab', '--no-sync')
    run(pg_ctl, '-D', data, '-l', os.path.join(folder, 'log'), '-w', '-o',
        f"-k {folder} -c listen_addresses='' -c fsync=off", 'start')
    try:
      yield f'postgresql://ftlab@/postgres?host={folder}'
    finally:
      run(pg_ctl, '-D', data, '-m', 'immediate', 'stop')
  finally:
    shutil.rmtree(folder, ignore_errors=True)
