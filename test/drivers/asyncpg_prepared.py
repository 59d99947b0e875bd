"""asyncpg_prepared.py - asyncpg's statement cache through sluice.

Proves that asyncpg works unchanged, with its statement cache on, through a
transaction pool: asyncpg prepares every query as a named statement
(__asyncpg_stmt_<n>__) and then only binds it. Several connections run
parameterized fetchval/fetch concurrently (asyncio.gather) on fewer servers,
so a connection's cached statements must be prepared again on whichever
server its next query gets; an explicit conn.prepare() statement is executed
many times, and prepared statements run inside conn.transaction() blocks.

Run with Debian's /usr/bin/python3 (python3-asyncpg). Connection settings come
from PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE; the database needs
the table items (id int primary key, name text) with rows 1..3 named
'one'..'three'. Prints one line starting with "OK" and exits 0 when every
result was right; any wrong result or error exits non-zero with a message.
"""
import asyncio
import os
import sys

try:
    import asyncpg
except ImportError as e:
    sys.exit(f"FAIL: asyncpg is not installed ({e}); install python3-asyncpg "
             "(scripts/setup.sh)")

NAMES = {1: "one", 2: "two", 3: "three"}
CONNECTIONS = 4
ROUNDS = 15


class Wrong(Exception):
    pass


def expect(what, got, want):
    if got != want:
        raise Wrong(f"{what}: got {got!r}, want {want!r}")


async def connect():
    env = os.environ
    try:
        return await asyncpg.connect(host=env["PGHOST"], port=int(env["PGPORT"]),
                                     user=env["PGUSER"], password=env["PGPASSWORD"],
                                     database=env["PGDATABASE"], timeout=10,
                                     # PGSSLMODE=require: TLS without verifying, as libpq's.
                                     ssl=env.get("PGSSLMODE", "prefer"))
    except KeyError as e:
        raise Wrong(f"environment variable {e} is not set")


async def worker(conn, n):
    """Parameterized queries (each one a cached named statement), many times."""
    done = 0
    for i in range(ROUNDS):
        item = (i + n) % 3 + 1
        expect(f"conn {n} round {i} by id",
               await conn.fetchval("select name from items where id = $1", item), NAMES[item])
        expect(f"conn {n} round {i} sum", await conn.fetchval("select $1::int + $2::int", i, n),
               i + n)
        rows = await conn.fetch("select id, name from items where id <= $1 order by id", item)
        expect(f"conn {n} round {i} rows", [(r["id"], r["name"]) for r in rows],
               [(k, NAMES[k]) for k in range(1, item + 1)])
        done += 3
    return done


async def explicit_prepare(conn, n):
    """One statement from conn.prepare(), executed again and again."""
    stmt = await conn.prepare("select name || $2::text from items where id = $1")
    for i in range(ROUNDS):
        item = i % 3 + 1
        expect(f"conn {n} prepared {i}", await stmt.fetchval(item, f"-{n}"),
               f"{NAMES[item]}-{n}")
        await asyncio.sleep(0)
    return ROUNDS


async def in_transaction(conn, n):
    """Prepared statements inside a transaction, with a write it undoes itself."""
    async with conn.transaction():
        await conn.execute("insert into items values ($1, $2)", 200 + n, f"tx{n}")
        for i in range(5):
            expect(f"conn {n} tx own row",
                   await conn.fetchval("select name from items where id = $1", 200 + n),
                   f"tx{n}")
        await conn.execute("delete from items where id = $1", 200 + n)
    expect(f"conn {n} after tx", await conn.fetchval("select count(*) from items"), 3)
    return 8


async def main():
    conns = [await connect() for _ in range(CONNECTIONS)]
    try:
        counts = await asyncio.gather(*(worker(c, n) for n, c in enumerate(conns)))
        counts += await asyncio.gather(*(explicit_prepare(c, n) for n, c in enumerate(conns)))
        counts += await asyncio.gather(*(in_transaction(c, n) for n, c in enumerate(conns)))
        # Once more after the transactions, interleaved with new statements.
        counts += await asyncio.gather(*(worker(c, n + 1) for n, c in enumerate(conns)))
    finally:
        for c in conns:
            await c.close()
    print(f"OK asyncpg {asyncpg.__version__}: {sum(counts)} queries on {CONNECTIONS} "
          "connections")


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(), 30))
    except Wrong as e:
        sys.exit(f"FAIL: {e}")
    except asyncpg.PostgresError as e:
        sys.exit(f"FAIL: {type(e).__name__} (SQLSTATE {e.sqlstate}): {e}")
    except (asyncpg.InterfaceError, OSError, asyncio.TimeoutError) as e:
        sys.exit(f"FAIL: {type(e).__name__}: {e}")
