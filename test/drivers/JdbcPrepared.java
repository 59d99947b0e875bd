/*
 * JdbcPrepared.java - the PostgreSQL JDBC driver's server-side prepared
 * statements through sluice.
 *
 * Proves that pgJDBC works unchanged through a transaction pool: once a
 * PreparedStatement has run prepareThreshold (5) times, the driver prepares it
 * as a named server statement (S_1, S_2, ... counted per connection) and then
 * only binds it. Three connections, interleaved on fewer servers, give the
 * same names to different statements (one of them prepares its statements in
 * a different order), so a shared server sees S_1 for several texts unless
 * sluice renames them, and every name must be prepared again when a
 * connection's next transaction lands on another server. Runs with autocommit
 * on and inside explicit transactions (setAutoCommit(false), commit and
 * rollback).
 *
 * Compiled with javac against /usr/share/java/postgresql.jar (Debian's
 * libpostgresql-jdbc-java). Connection settings come from PGHOST, PGPORT,
 * PGUSER, PGPASSWORD and PGDATABASE; the database needs the table
 * items (id int primary key, name text) with rows 1..3 named 'one'..'three'.
 * Prints one line starting with "OK" and exits 0 when every result was right;
 * any wrong result or error exits non-zero with a message.
 */
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.Properties;

public class JdbcPrepared {
	static final String[] NAMES = { "one", "two", "three" };
	static final int ROUNDS = 12;
	static int queries = 0;

	static void fail(String msg) {
		System.err.println("FAIL: " + msg);
		System.exit(1);
	}

	static String env(String name) {
		String v = System.getenv(name);
		if (v == null)
			fail("environment variable " + name + " is not set");
		return v;
	}

	/* Runs ps (parameters already set), which must return one row whose first value is want. */
	static void expect(String what, PreparedStatement ps, String want) throws SQLException {
		try (ResultSet rs = ps.executeQuery()) {
			if (!rs.next())
				fail(what + ": no row");
			String got = rs.getString(1);
			if (!want.equals(got))
				fail(what + ": got '" + got + "', want '" + want + "'");
			if (rs.next())
				fail(what + ": more than one row");
		}
		queries++;
	}

	/* The statements of one connection, prepared in the order given by swap. */
	static class Client {
		final Connection conn;
		final PreparedStatement byId, sum;

		Client(Connection conn, boolean swap) throws SQLException {
			this.conn = conn;
			if (swap) {
				sum = conn.prepareStatement("select ?::int + ?::int");
				byId = conn.prepareStatement("select name from items where id = ?");
			} else {
				byId = conn.prepareStatement("select name from items where id = ?");
				sum = conn.prepareStatement("select ?::int + ?::int");
			}
		}

		void run(String who, int i) throws SQLException {
			int item = i % 3 + 1;
			byId.setInt(1, item);
			expect(who + " round " + i + " by id", byId, NAMES[item - 1]);
			sum.setInt(1, i);
			sum.setInt(2, 1000);
			expect(who + " round " + i + " sum", sum, Integer.toString(i + 1000));
		}
	}

	/*
	 * One explicit transaction on c: its prepared statements, an insert of row id
	 * that it then sees, and a rollback, or a delete of the row and a commit.
	 */
	static void transaction(Client c, String who, int id, boolean commit) throws SQLException {
		c.conn.setAutoCommit(false);
		for (int i = 0; i < ROUNDS / 2; i++)
			c.run(who, i);
		String insert = "insert into items values (?, ?)";
		try (PreparedStatement ins = c.conn.prepareStatement(insert)) {
			ins.setInt(1, id);
			ins.setString(2, who);
			ins.executeUpdate();
		}
		c.byId.setInt(1, id);
		expect(who + " own row", c.byId, who);
		if (commit) {
			String delete = "delete from items where id = ?";
			try (PreparedStatement del = c.conn.prepareStatement(delete)) {
				del.setInt(1, id);
				del.executeUpdate();
			}
			c.conn.commit();
		} else {
			c.conn.rollback();
		}
		c.conn.setAutoCommit(true);
		String rows = "select count(*) from items";
		try (PreparedStatement count = c.conn.prepareStatement(rows)) {
			expect(who + " after the transaction", count, "3");
		}
		queries += 2;
	}

	public static void main(String[] args) throws Exception {
		String url = "jdbc:postgresql://" + env("PGHOST") + ":" + env("PGPORT") + "/"
			+ env("PGDATABASE");
		Properties props = new Properties();
		props.setProperty("user", env("PGUSER"));
		props.setProperty("password", env("PGPASSWORD"));
		props.setProperty("connectTimeout", "10");
		props.setProperty("socketTimeout", "20");
		// PGSSLMODE=require: TLS without verifying the certificate, as libpq's require.
		String sslmode = System.getenv("PGSSLMODE");
		if (sslmode != null)
			props.setProperty("sslmode", sslmode);
		try {
			Client[] clients = new Client[3];
			for (int n = 0; n < clients.length; n++) {
				Connection conn = DriverManager.getConnection(url, props);
				clients[n] = new Client(conn, n == 1);
			}
			/* Client 1 runs 'sum' past the threshold first: its S_1 is not others'. */
			for (int i = 0; i < 8; i++) {
				Client c = clients[1];
				c.sum.setInt(1, i);
				c.sum.setInt(2, 1);
				expect("client 1 warm-up sum " + i, c.sum, Integer.toString(i + 1));
			}

			/* Autocommit: every statement is a transaction of its own, interleaved. */
			for (int i = 0; i < ROUNDS; i++)
				for (int n = 0; n < clients.length; n++)
					clients[n].run("client " + n, i);

			/* Explicit transactions, one connection at a time (each keeps a server). */
			for (int round = 0; round < 2; round++)
				for (int n = 0; n < clients.length; n++)
					transaction(clients[n], "tx" + n, 300 + n, round == 1);

			/* And interleaved again after the transactions. */
			for (int i = 0; i < ROUNDS; i++)
				for (int n = clients.length - 1; n >= 0; n--)
					clients[n].run("client " + n + " again", i);

			for (Client c : clients)
				c.conn.close();
		} catch (SQLException e) {
			fail("SQLException (SQLSTATE " + e.getSQLState() + "): " + e.getMessage());
		}
		String version = org.postgresql.util.DriverInfo.DRIVER_VERSION;
		System.out.println("OK pgjdbc " + version + ": " + queries + " statements");
	}
}
