// Runs a Neo4j Community server embedded in this JVM, with Bolt on 127.0.0.1, for the
// integration tests. Started by scripts/neo4j.sh with Java's single-file launcher:
//   NEO4J_PASSWORD=<password> java -cp '<lib>/*' Server.java <home> <data> <bolt-port>
// Prints "Neo4j started" only once Bolt accepts logins as user neo4j with <password> (taken
// from the environment so it does not show in the process list), and
// shuts the databases down cleanly on SIGTERM.

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Map;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.QueryExecutionException;

public class Server {
    public static void main(String[] args) throws Exception {
        String password = System.getenv("NEO4J_PASSWORD");
        if (args.length != 3 || password == null || password.isEmpty()) {
            System.err.println("usage: NEO4J_PASSWORD=<password> Server.java <home> <data> <bolt-port>");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        Path data = Path.of(args[1]).toAbsolutePath();
        int port = Integer.parseInt(args[2]);

        DatabaseManagementService dbms = new DatabaseManagementServiceBuilder(home)
                .setConfig(Map.of(
                        GraphDatabaseSettings.data_directory, data,
                        GraphDatabaseSettings.auth_enabled, true,
                        // Test servers must not phone home with usage reports.
                        GraphDatabaseSettings.udc_enabled, false,
                        // Small page cache: the test graphs are tiny and the machine is shared.
                        GraphDatabaseSettings.pagecache_memory, 64L * 1024 * 1024,
                        BoltConnector.enabled, true,
                        BoltConnector.listen_address, new SocketAddress("127.0.0.1", port)))
                .build();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("Neo4j stopping");
            dbms.shutdown();
            System.out.println("Neo4j stopped");
        }));

        setPassword(dbms, password, data.resolve("password.sha256"));
        System.out.println("Neo4j started: bolt://127.0.0.1:" + port + " (user neo4j)");
        Thread.currentThread().join();
    }

    // The embedded API runs with full rights, so it can give the built-in user its password
    // without the "must change password on first login" step an initial password would need.
    // A digest of the password last applied is kept next to the databases because the
    // administration command costs seconds on a cold server and most starts reuse it.
    private static void setPassword(DatabaseManagementService dbms, String password, Path marker)
            throws IOException, NoSuchAlgorithmException {
        String digest = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256")
                .digest(password.getBytes(StandardCharsets.UTF_8)));
        if (Files.exists(marker) && Files.readString(marker).equals(digest)) {
            return;
        }
        try {
            dbms.database("system").executeTransactionally(
                    "ALTER USER neo4j SET PASSWORD $password CHANGE NOT REQUIRED",
                    Map.of("password", password));
        } catch (QueryExecutionException e) {
            // The marker was lost but the password is already this one: Neo4j refuses to
            // "change" a password to itself.
            if (!e.getMessage().contains("cannot be the same")) {
                throw e;
            }
        }
        Files.writeString(marker, digest);
    }
}
