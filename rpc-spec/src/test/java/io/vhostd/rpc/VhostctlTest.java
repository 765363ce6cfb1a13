package io.vhostd.rpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

@Timeout(20)
class VhostctlTest {
    private static final String BDEVS = "[{\"name\":\"disk0\",\"type\":\"file\",\"path\":\"/var/lib/vhostd/disk0.img\","
            + "\"size_bytes\":1073741824,\"block_size\":512,\"num_blocks\":2097152,\"read_only\":false,"
            + "\"engine\":\"io_uring\"}]";
    private static final String CONTROLLERS =
            "[{\"name\":\"vhost-blk0\",\"type\":\"vhost-user-blk\",\"bdev\":\"disk0\","
                    + "\"socket\":\"/run/vhostd/vhost-blk0.sock\",\"num_queues\":2,\"slave_pid\":null,\"sessions\":[]}]";

    @TempDir
    Path dir;

    private final StringWriter out = new StringWriter();
    private final StringWriter err = new StringWriter();

    private int vhostctl(Map<String, String> env, String... args) {
        return Vhostctl.run(new PrintWriter(out), new PrintWriter(err), env, args);
    }

    /** Answers bdev_get_bdevs and vhost_get_controllers with fixed data; any other method: method_not_found. */
    private ScriptedServer server() throws Exception {
        return new ScriptedServer(dir.resolve("rpc.sock"), (req, conn) -> {
            String id = req.get("id").toString();
            String method = req.get("method").asText();
            if (req.path("params").path("name").asText().equals("disk9")) {
                conn.write("{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32001,\"message\":\"no bdev named 'disk9'\","
                        + "\"data\":{\"name\":\"no_such_bdev\"}},\"id\":" + id + "}\n");
            } else if (method.equals("bdev_get_bdevs")) {
                conn.write("{\"jsonrpc\":\"2.0\",\"result\":" + BDEVS + ",\"id\":" + id + "}\n");
            } else if (method.equals("vhost_get_controllers")) {
                conn.write("{\"jsonrpc\":\"2.0\",\"result\":" + CONTROLLERS + ",\"id\":" + id + "}\n");
            } else {
                conn.write("{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32601,\"message\":\"no method named '" + method
                        + "'\",\"data\":{\"name\":\"method_not_found\"}},\"id\":" + id + "}\n");
            }
        });
    }

    @Test
    void shouldPrintTableWhenListingBdevs() throws Exception {
        try (ScriptedServer server = server()) {
            assertEquals(0, vhostctl(Map.of(), "--socket", server.path().toString(), "bdevs"), err.toString());
            String[] lines = out.toString().split("\n");
            assertEquals(2, lines.length, out.toString());
            assertTrue(lines[0].matches("NAME +TYPE +SIZE +BLOCK_SIZE +BLOCKS +RO +ENGINE +PATH"), lines[0]);
            assertTrue(
                    lines[1].matches(
                            "disk0 +file +1\\.0 GiB +512 +2097152 +false +io_uring +/var/lib/vhostd/disk0.img"),
                    lines[1]);
        }
    }

    @Test
    void shouldPrintJsonAndTakeSocketFromEnvWhenAsked() throws Exception {
        try (ScriptedServer server = server()) {
            int code = vhostctl(Map.of(Vhostctl.SOCKET_ENV, server.path().toString()), "--json", "controllers");
            assertEquals(0, code, err.toString());
            assertEquals(Json.MAPPER.readTree(CONTROLLERS), Json.MAPPER.readTree(out.toString()));
        }
    }

    @Test
    void shouldPrintControllerTableWhenNoSession() throws Exception {
        try (ScriptedServer server = server()) {
            assertEquals(0, vhostctl(Map.of(), "--socket", server.path().toString(), "controllers", "vhost-blk0"));
            assertTrue(out.toString().contains("vhost-blk0"), out.toString());
            JsonNode sent = server.requests().poll(5, TimeUnit.SECONDS);
            assertEquals("vhost-blk0", sent.path("params").path("name").asText());
        }
    }

    @Test
    void shouldPrintNamedErrorAndExitOneWhenServerAnswersWithError() throws Exception {
        try (ScriptedServer server = server()) {
            assertEquals(1, vhostctl(Map.of(), "--socket", server.path().toString(), "bdevs", "disk9"));
            assertEquals("error: no_such_bdev: no bdev named 'disk9'\n", err.toString());
            assertEquals("", out.toString());
        }
    }

    @Test
    void shouldCallAnyMethodWhenRawRpcUsed() throws Exception {
        try (ScriptedServer server = server()) {
            int code = vhostctl(
                    Map.of(), "--socket", server.path().toString(), "rpc", "bdev_get_bdevs", "{\"name\":\"disk0\"}");
            assertEquals(0, code, err.toString());
            assertEquals(Json.MAPPER.readTree(BDEVS), Json.MAPPER.readTree(out.toString()));
            assertEquals(1, vhostctl(Map.of(), "--socket", server.path().toString(), "rpc", "nope_get_x"));
            assertTrue(err.toString().startsWith("error: method_not_found: "), err.toString());
        }
    }

    @Test
    void shouldExitWithUsageWhenRawParamsAreNotJson() {
        assertEquals(Vhostctl.EXIT_USAGE, vhostctl(Map.of(), "rpc", "bdev_get_bdevs", "{name:"));
        assertTrue(err.toString().contains("not valid JSON"), err.toString());
    }

    @Test
    void shouldExitTwoAndNameSocketWhenDaemonUnreachable() {
        Path missing = dir.resolve("missing.sock");
        assertEquals(2, vhostctl(Map.of(), "--socket", missing.toString(), "bdevs"));
        assertTrue(err.toString().startsWith("error: cannot connect to " + missing + ": "), err.toString());
    }

    @Test
    void shouldDescribeMethodsFromTheSpecWhenNoDaemonRuns() {
        assertEquals(0, vhostctl(Map.of(), "methods"), err.toString());
        String text = out.toString();
        for (RpcSpec.Method m : RpcSpec.load().methods()) {
            assertTrue(text.contains(m.name() + " - " + m.summary()), text);
            assertTrue(text.contains(m.description()), text);
        }
        assertTrue(text.contains("name (string, optional): "), text);
        assertEquals(1, vhostctl(Map.of(), "methods", "nope"));
    }

    @Test
    void shouldPrintMethodObjectsWhenMethodsAskedForJson() throws Exception {
        assertEquals(0, vhostctl(Map.of(), "--json", "methods", "bdev_get_bdevs"), err.toString());
        JsonNode printed = Json.MAPPER.readTree(out.toString());
        assertEquals(1, printed.size());
        assertEquals("bdev_get_bdevs", printed.get(0).get("name").asText());
    }

    @Test
    void shouldExitWithUsageWhenCommandMissingOrUnknown() {
        assertEquals(Vhostctl.EXIT_USAGE, vhostctl(Map.of()));
        assertTrue(err.toString().contains("missing COMMAND"), err.toString());
        assertEquals(Vhostctl.EXIT_USAGE, vhostctl(Map.of(), "frobnicate"));
        assertEquals(0, vhostctl(Map.of(), "--help"));
    }

    @Test
    void shouldListSpecMethodsWhenRpcHelpShown() {
        assertEquals(0, vhostctl(Map.of(), "help", "rpc"));
        // every described method, in the description's (sorted) order
        assertTrue(
                out.toString()
                        .replaceAll("\\s+", " ")
                        .contains(String.join(", ", RpcSpec.load().methodNames())),
                out.toString());
    }
}
