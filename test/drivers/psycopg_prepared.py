"""psycopg_prepared.py - psycopg 3's automatic prepared statements through sluice.

Proves that psycopg 3 works unchanged through a transaction pool: once a query
has run prepare_threshold times, psycopg prepares it under a connection-local
name (_pg3_0, _pg3_1, ...) and from then on only binds that name. Three
connections share the pool's server(s), so each name must be re-prepared on
whichever server a transaction lands on, and the connections give the same
names to different statement texts (one prepares its own queries first, with
prepare=True), which on a shared server fails with 42P05 / 26000 unless sluice
renames the statements. Also runs prepared statements inside explicit
transactions.

Run with Debian's /usr/bin/python3 (python3-psycopg). Connection settings come
from PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE; the database needs
the table items (id int primary key, name text) with rows 1..3 named
'one'..'three'. Prints one line starting with "OK" and exits 0 when every
result was right; any wrong result or error exits non-zero with a message.
"""
import os
import sys

try:
    import psycopg
except ImportError as e:
    sys.exit(f"FAIL: psycopg 3 is not installed ({e}); install python3-psycopg "
             "(scripts/setup.sh)")

NAMES = {1: "one", 2: "two", 3: "three"}
BY_ID = "select name from items where id = %s"
SUM = "select %s::int + %s::int"
COUNT = "select count(*) from items where id <= %s"
ROUNDS = 12


def fail(msg):
    sys.exit(f"FAIL: {msg}")


def expect(what, got, want):
    if got != want:
        fail(f"{what}: got {got!r}, want {want!r}")


def connect(**kw):
    env = os.environ
    try:
        return psycopg.connect(host=env["PGHOST"], port=env["PGPORT"], user=env["PGUSER"],
                               password=env["PGPASSWORD"], dbname=env["PGDATABASE"],
                               connect_timeout=10, **kw)
    except KeyError as e:
        fail(f"environment variable {e} is not set")


def main():
    conns = [connect(autocommit=True) for _ in range(3)]
    a, b, c = conns
    queries = 0

    # c prepares other texts first, so its _pg3_0 and _pg3_1 are not a's or b's.
    expect("c count", c.execute(COUNT, (2,), prepare=True).fetchone()[0], 2)
    expect("c sum", c.execute(SUM, (40, 2), prepare=True).fetchone()[0], 42)
    queries += 2

    # Interleaved across the connections, well past the threshold.
    for i in range(ROUNDS):
        item = i % 3 + 1
        for n, conn in enumerate(conns):
            expect(f"round {i} conn {n} by id", conn.execute(BY_ID, (item,)).fetchone()[0],
                   NAMES[item])
            expect(f"round {i} conn {n} sum", conn.execute(SUM, (i, n)).fetchone()[0], i + n)
            expect(f"round {i} conn {n} count", conn.execute(COUNT, (item,)).fetchone()[0],
                   item)
            queries += 3

    # Inside explicit transactions, one connection at a time (a transaction keeps its
    # server), with a write that the transaction itself undoes.
    for n, conn in enumerate(conns):
        with conn.transaction():
            for i in range(ROUNDS):
                item = i % 3 + 1
                expect(f"tx conn {n} by id", conn.execute(BY_ID, (item,)).fetchone()[0],
                       NAMES[item])
                expect(f"tx conn {n} sum", conn.execute(SUM, (i, 100)).fetchone()[0], i + 100)
                queries += 2
            conn.execute("insert into items values (%s, %s)", (100 + n, f"tx{n}"))
            expect(f"tx conn {n} own row", conn.execute(BY_ID, (100 + n,)).fetchone()[0],
                   f"tx{n}")
            conn.execute("delete from items where id = %s", (100 + n,))
            queries += 3
        expect(f"after tx conn {n}", conn.execute(COUNT, (1000,)).fetchone()[0], 3)
        queries += 1

    # psycopg really switched to named statements (otherwise the test proves nothing).
    for n, conn in enumerate(conns):
        prepared = getattr(conn, "_prepared", None)
        names = getattr(prepared, "_names", None)
        if names is not None and len(names) < 2:
            fail(f"conn {n}: psycopg prepared {len(names)} statements, want at least 2")

    for conn in conns:
        conn.close()
    print(f"OK psycopg {psycopg.__version__}: {queries} queries on 3 connections")


if __name__ == "__main__":
    try:
        main()
    except psycopg.Error as e:
        fail(f"{type(e).__name__} (SQLSTATE {e.sqlstate}): {e}")
