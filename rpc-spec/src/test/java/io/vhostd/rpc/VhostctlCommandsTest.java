package io.vhostd.rpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** The issue #5 commands of vhostctl against a scripted server answering with fixed JSON. */
@Timeout(20)
class VhostctlCommandsTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String IOSTAT = "{\"tick_rate\":1000000000,\"ticks\":3000000000,\"start_ticks\":1000000000,"
            + "\"bdevs\":[{\"name\":\"disk0\",\"num_read_ops\":200,\"bytes_read\":819200,\"num_write_ops\":0,"
            + "\"bytes_written\":0,\"num_flush_ops\":0,\"num_unmap_ops\":0,\"bytes_unmapped\":0,"
            + "\"num_write_zeroes_ops\":0,\"bytes_write_zeroes\":0,\"read_latency_ticks\":0,"
            + "\"write_latency_ticks\":0,\"flush_latency_ticks\":0,\"unmap_latency_ticks\":0,"
            + "\"write_zeroes_latency_ticks\":0,\"io_errors\":0,\"queue_depth\":0,\"io_time_ticks\":0,"
            + "\"weighted_io_time_ticks\":0}]}";
    private static final String SLAVES = "{\"slaves\":[{\"slave_id\":\"slave-1\",\"pid\":42,\"role\":\"serving\","
            + "\"build\":\"/usr/lib/vhostd/vhostd.jar\",\"started_unix_ms\":0,\"controllers\":[\"vb0\",\"vb1\"]},"
            + "{\"slave_id\":\"slave-2\",\"pid\":43,\"role\":\"standby\",\"build\":\"/usr/lib/vhostd/vhostd.jar\","
            + "\"started_unix_ms\":0,\"controllers\":[]}]}";

    @TempDir
    Path dir;

    private final StringWriter out = new StringWriter();
    private final StringWriter err = new StringWriter();
    private final List<JsonNode> requests = new CopyOnWriteArrayList<>();

    private ScriptedServer server() throws Exception {
        return new ScriptedServer(dir.resolve("rpc.sock"), (req, conn) -> {
            requests.add(req);
            String id = req.get("id").toString();
            String result =
                    switch (req.get("method").asText()) {
                        case "bdev_get_iostat" -> IOSTAT;
                        case "slave_get_slaves" -> SLAVES;
                        case "trace_start", "trace_stop" -> "true";
                        case "trace_get_events" -> "{\"events\":[],\"dropped\":0}";
                        default -> null;
                    };
            if (result == null) {
                conn.write("{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32007,\"message\":\"permission denied: user"
                        + " nobody\",\"data\":{\"name\":\"permission_denied\"}},\"id\":" + id + "}\n");
            } else {
                conn.write("{\"jsonrpc\":\"2.0\",\"result\":" + result + ",\"id\":" + id + "}\n");
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
    void shouldPrintIostatSinceStartAndAskForTheDeviceWhenGivenD() throws Exception {
        try (ScriptedServer server = server()) {
            assertEquals(0, vhostctl(server, "iostat", "-d", "disk0"), err.toString());
        }

        String[] lines = out.toString().split("\n");
        assertTrue(lines[0].startsWith("Device             tps    kB_read/s"), lines[0]);
        assertEquals(
                "disk0           100.00       400.00         0.00         0.00        800          0          0",
                lines[1]);
        assertEquals("disk0", requests.get(0).path("params").path("name").asText());
    }

    @Test
    void shouldPrintRawResultWhenJson() throws Exception {
        try (ScriptedServer server = server()) {
            assertEquals(0, vhostctl(server, "--json", "slaves"), err.toString());
        }

        assertEquals(JSON.readTree(SLAVES), JSON.readTree(out.toString()));
    }

    @Test
    void shouldListSlavesWithRolesWhenAsked() throws Exception {
        try (ScriptedServer server = server()) {
            assertEquals(0, vhostctl(server, "slaves"), err.toString());
        }

        String[] lines = out.toString().split("\n");
        assertTrue(lines[0].matches("SLAVE_ID +PID +ROLE +STARTED +CONTROLLERS +BUILD"), lines[0]);
        assertTrue(lines[1].matches("slave-1 +42 +serving +- +vb0,vb1 +/usr/lib/vhostd/vhostd.jar"), lines[1]);
        assertTrue(lines[2].matches("slave-2 +43 +standby +- +- +/usr/lib/vhostd/vhostd.jar"), lines[2]);
    }

    @Test
    void shouldCallTraceMethodsWithTheControllerWhenGiven() throws Exception {
        try (ScriptedServer server = server()) {
            assertEquals(0, vhostctl(server, "trace", "start", "vb0"), err.toString());
            assertEquals(0, vhostctl(server, "trace", "dump", "--max", "10"), err.toString());
            assertEquals(Vhostctl.EXIT_USAGE, vhostctl(server, "trace", "pause"));
        }

        assertEquals("trace_start", requests.get(0).path("method").asText());
        assertEquals("vb0", requests.get(0).path("params").path("controller").asText());
        assertEquals(10, requests.get(1).path("params").path("max").asInt());
        assertTrue(out.toString().startsWith("trace started on vb0\nCTRLR"), out.toString());
    }

    @Test
    void shouldExitNoPermWithNameAndMessageWhenDaemonDenies() throws Exception {
        try (ScriptedServer server = server()) {
            assertEquals(Vhostctl.EXIT_NOPERM, vhostctl(server, "smart-log", "nvme0n1"));
        }

        assertEquals("error: permission_denied: permission denied: user nobody\n", err.toString());
    }

    @Test
    void shouldTakeHelpFromTheSpecWhenShown() {
        assertEquals(0, Vhostctl.run(new PrintWriter(out), new PrintWriter(err), Map.of(), "help", "slaves"));

        assertTrue(out.toString().contains("List slave processes (slave_get_slaves)."), out.toString());
    }
}
