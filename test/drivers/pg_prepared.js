/*
 * pg_prepared.js - node-postgres named prepared statements through sluice.
 *
 * Proves that node-postgres (`pg`) works unchanged through a transaction pool:
 * a query with `name:` is parsed once per connection under that name and then
 * only bound. Three pg.Client connections, interleaved on fewer servers, give
 * the SAME names to DIFFERENT statement texts ('by-key' is a lookup by id on
 * one client, arithmetic on another), which on a shared server fails with
 * 42P05 or returns the other client's rows unless sluice renames the
 * statements; and every name must be prepared again when a client's next
 * transaction lands on another server. Also runs named statements inside
 * BEGIN/COMMIT.
 *
 * Needs `npm ci --prefix test/drivers` (scripts/setup.sh). Connection settings
 * come from PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE; the database
 * needs the table items (id int primary key, name text) with rows 1..3 named
 * 'one'..'three'. Prints one line starting with "OK" and exits 0 when every
 * result was right; any wrong result or error exits non-zero with a message.
 */
'use strict';

let pg;
try {
	pg = require('pg');
} catch (e) {
	console.error(`FAIL: node-postgres is not installed (${e.message}); ` +
		'run npm ci --prefix test/drivers (scripts/setup.sh)');
	process.exit(2);
}

const NAMES = { 1: 'one', 2: 'two', 3: 'three' };
const ROUNDS = 12;

function fail(msg) {
	console.error(`FAIL: ${msg}`);
	process.exit(1);
}

function env(name) {
	const v = process.env[name];
	if (v === undefined)
		fail(`environment variable ${name} is not set`);
	return v;
}

function expect(what, got, want) {
	if (JSON.stringify(got) !== JSON.stringify(want))
		fail(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}

/* What each client means by the names it shares with the others. */
const flavours = [
	{
		'by-key': { text: 'select name as v from items where id = $1',
			want: (k) => NAMES[k] },
		'calc': { text: 'select ($1::int * 10)::text as v', want: (k) => String(k * 10) },
	},
	{
		'by-key': { text: 'select ($1::int + 100)::text as v',
			want: (k) => String(k + 100) },
		'calc': { text: 'select upper(name) as v from items where id = $1',
			want: (k) => NAMES[k].toUpperCase() },
	},
	{
		'by-key': { text: 'select name as v from items where id = $1',
			want: (k) => NAMES[k] },
		'calc': { text: 'select count(*)::text as v from items where id <= $1',
			want: (k) => String(k) },
	},
];

async function run(client, n, what, key, round) {
	const f = flavours[n][key];
	const item = round % 3 + 1;
	const res = await client.query({ name: key, text: f.text, values: [item] });
	expect(`client ${n} ${what} ${key} round ${round}`, res.rows.map((r) => r.v),
		[f.want(item)]);
}

async function main() {
	const config = {
		host: env('PGHOST'), port: Number(env('PGPORT')), user: env('PGUSER'),
		password: env('PGPASSWORD'), database: env('PGDATABASE'),
		connectionTimeoutMillis: 10000, query_timeout: 20000,
		// PGSSLMODE=require: TLS without verifying the certificate, as libpq's require.
		ssl: process.env.PGSSLMODE === 'require' ? { rejectUnauthorized: false } : false,
	};
	const clients = [];
	for (let n = 0; n < 3; n++) {
		const c = new pg.Client(config);
		await c.connect();
		clients.push(c);
	}
	let queries = 0;

	/* Interleaved, one query at a time, and then all clients at once. */
	for (let i = 0; i < ROUNDS; i++) {
		for (let n = 0; n < clients.length; n++) {
			await run(clients[n], n, 'serial', 'by-key', i);
			await run(clients[n], n, 'serial', 'calc', i);
			queries += 2;
		}
		const key = i % 2 ? 'calc' : 'by-key';
		await Promise.all(clients.map((c, n) => run(c, n, 'parallel', key, i)));
		queries += clients.length;
	}

	/* Inside transactions: one client at a time (a transaction keeps its server). */
	for (let n = 0; n < clients.length; n++) {
		const c = clients[n];
		await c.query('BEGIN');
		await c.query({ name: 'ins', text: 'insert into items values ($1, $2)',
			values: [400 + n, `tx${n}`] });
		for (let i = 0; i < 6; i++) {
			await run(c, n, 'tx', 'by-key', i);
			await run(c, n, 'tx', 'calc', i);
		}
		const own = await c.query({ name: 'own',
			text: 'select name from items where id = $1', values: [400 + n] });
		expect(`client ${n} own row`, own.rows.map((r) => r.name), [`tx${n}`]);
		await c.query('ROLLBACK');
		const count = await c.query({ name: 'count',
			text: 'select count(*)::int as n from items' });
		expect(`client ${n} after rollback`, count.rows[0].n, 3);
		queries += 16;
	}

	for (const c of clients)
		await c.end();
	const version = require('pg/package.json').version;
	console.log(`OK node-postgres ${version}: ${queries} queries on ${clients.length} clients`);
}

const timer = setTimeout(() => fail('timed out after 30 s'), 30000);
main().then(() => clearTimeout(timer),
	(e) => fail(`${e.code ? `SQLSTATE ${e.code}: ` : ''}${e.message}`));
