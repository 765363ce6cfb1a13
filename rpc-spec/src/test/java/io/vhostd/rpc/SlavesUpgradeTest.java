package io.vhostd.rpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** {@code vhostctl slaves upgrade} (issue #4) against a scripted server. */
@Timeout(20)
class SlavesUpgradeTest {
    private static final String RESULT =
            "{\"slave_id\":\"slave-3\",\"pid\":5120,\"controllers\":[{\"name\":\"vb0\",\"pause_us\":2350}]}";

    @TempDir
    Path dir;

    private final StringWriter out = new StringWriter();
    private final StringWriter err = new StringWriter();
    private final List<JsonNode> requests = new CopyOnWriteArrayList<>();

    private ScriptedServer server(boolean refuse) throws Exception {
        return new ScriptedServer(dir.resolve("rpc.sock"), (req, conn) -> {
            requests.add(req);
            String id = req.get("id").toString();
            if (refuse) {
                conn.write("{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32012,\"message\":\"slave slave-3 refused:"
                        + " incompatible journal version 2.0.0 (master 1.0.0); slave slave-1 keeps serving\","
                        + "\"data\":{\"name\":\"slave_incompatible\"}},\"id\":" + id + "}\n");
            } else {
                conn.write("{\"jsonrpc\":\"2.0\",\"result\":" + RESULT + ",\"id\":" + id + "}\n");
            }
        });
    }

    private int vhostctl(ScriptedServer server, String... args) {
        String[] all = new String[args.length + 2];
        all[0] = "--socket";
        all[1] = server.path().toString();
        System.arraycopy(args, 0, all, 2, args.length);
        return Vhostctl.run(new PrintWriter(out), new PrintWriter(err), Map.of(), all);
    }

    @Test
    void shouldSendJarAndPrintPausesWhenUpgrading() throws Exception {
        try (ScriptedServer server = server(false)) {
            assertEquals(0, vhostctl(server, "slaves", "upgrade", "--jar", "/opt/vhostd-0.2.jar"), err.toString());
        }
        assertEquals("slave_upgrade", requests.get(0).get("method").asText());
        assertEquals(
                "/opt/vhostd-0.2.jar", requests.get(0).get("params").get("jar").asText());
        String text = out.toString();
        assertTrue(text.startsWith("slave-3 (pid 5120) serves every controller now"), text);
        assertTrue(text.contains("vb0") && text.contains("2350"), text);
    }

    @Test
    void shouldSendNoJarAndPrintRawResultWhenJsonAsked() throws Exception {
        try (ScriptedServer server = server(false)) {
            assertEquals(0, vhostctl(server, "--json", "slaves", "upgrade"), err.toString());
        }
        assertFalse(requests.get(0).get("params").has("jar"), requests.toString());
        assertTrue(out.toString().contains("\"pause_us\" : 2350"), out.toString());
    }

    @Test
    void shouldExitWithRpcErrorWhenSlaveIncompatible() throws Exception {
        try (ScriptedServer server = server(true)) {
            assertEquals(Vhostctl.EXIT_RPC_ERROR, vhostctl(server, "slaves", "upgrade"));
        }
        assertTrue(err.toString().contains("slave_incompatible"), err.toString());
        assertTrue(err.toString().contains("keeps serving"), err.toString());
    }
}
