/*
 * postgresjs_prepared.js - postgres.js prepared statements through sluice.
 *
 * Proves that postgres.js works unchanged, with its default prepare: true,
 * through a transaction pool: every parameterized query becomes a named
 * statement that each connection prepares once and then only binds. A small
 * client pool (max 3 connections) runs many queries in parallel on fewer
 * servers, so statements must be prepared again whenever a connection's next
 * query lands on another server; transactions (sql.begin) run prepared
 * statements too.
 *
 * Needs `npm ci --prefix test/drivers` (scripts/setup.sh). Connection settings
 * come from PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE; the database
 * needs the table items (id int primary key, name text) with rows 1..3 named
 * 'one'..'three'. Prints one line starting with "OK" and exits 0 when every
 * result was right; any wrong result or error exits non-zero with a message.
 */
'use strict';

let postgres;
try {
	postgres = require('postgres');
} catch (e) {
	console.error(`FAIL: postgres.js is not installed (${e.message}); ` +
		'run npm ci --prefix test/drivers (scripts/setup.sh)');
	process.exit(2);
}

const NAMES = { 1: 'one', 2: 'two', 3: 'three' };
const PARALLEL = 60;

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

async function one(sql, i) {
	const item = i % 3 + 1;
	switch (i % 3) {
	case 0: {
		const rows = await sql`select name from items where id = ${item}`;
		expect(`query ${i} by id`, rows.map((r) => r.name), [NAMES[item]]);
		break;
	}
	case 1: {
		const rows = await sql`select ${i}::int + ${item}::int as v`;
		expect(`query ${i} sum`, rows.map((r) => r.v), [i + item]);
		break;
	}
	default: {
		const rows = await sql`select id from items where id <= ${item} order by id`;
		expect(`query ${i} ids`, rows.map((r) => r.id),
			[...Array(item).keys()].map((k) => k + 1));
	}
	}
}

async function main() {
	const sql = postgres({
		host: env('PGHOST'), port: Number(env('PGPORT')), username: env('PGUSER'),
		password: env('PGPASSWORD'), database: env('PGDATABASE'),
		max: 3, prepare: true, connect_timeout: 10, onnotice: () => {},
		// PGSSLMODE=require: TLS without verifying the certificate, as libpq's require.
		ssl: process.env.PGSSLMODE === 'require' ? 'require' : false,
	});
	let queries = 0;
	try {
		for (let wave = 0; wave < 3; wave++) {
			const batch = [...Array(PARALLEL).keys()];
			await Promise.all(batch.map((i) => one(sql, i + wave)));
			queries += PARALLEL;
		}
		/* Transactions, in parallel: each holds a connection and a server until it ends. */
		await Promise.all([0, 1, 2].map((n) => sql.begin(async (tx) => {
			await tx`insert into items values (${500 + n}, ${'tx' + n})`;
			for (let i = 0; i < 5; i++) {
				const rows = await tx`select name from items where id = ${500 + n}`;
				expect(`tx ${n} own row`, rows.map((r) => r.name), ['tx' + n]);
				await one(tx, i + n);
			}
			await tx`delete from items where id = ${500 + n}`;
		})));
		queries += 3 * 12;
		const [{ count }] =
			await sql`select count(*)::int as count from items where id > ${0}`;
		expect('rows after the transactions', count, 3);
		queries += 1;
		await Promise.all([...Array(PARALLEL).keys()].map((i) => one(sql, i)));
		queries += PARALLEL;
	} finally {
		await sql.end({ timeout: 5 });
	}
	/* Its package.json is not exported, so it is read as a file. */
	const manifest =
		require('path').join(__dirname, 'node_modules', 'postgres', 'package.json');
	const version = JSON.parse(require('fs').readFileSync(manifest, 'utf8')).version;
	console.log(`OK postgres.js ${version}: ${queries} queries on at most 3 connections`);
}

const timer = setTimeout(() => fail('timed out after 30 s'), 30000);
main().then(() => clearTimeout(timer),
	(e) => fail(`${e.code ? `SQLSTATE ${e.code}: ` : ''}${e.message}`));
