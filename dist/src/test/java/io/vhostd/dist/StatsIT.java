package io.vhostd.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.vhostd.rpc.RpcClient;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.BitSet;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Issue #5 statistics end to end: fio (libblkio engine, no VM) writes through vhostd, and what {@code
 * bdev_get_iostat}, {@code bdev_get_histogram} and {@code trace_get_events} report is exactly what fio did.
 *
 * <ol>
 *   <li>{@code bin/vhostd master} serves a sparse 1 GiB file bdev through a controller with 2 queues. Over its RPC
 *       socket: {@code bdev_enable_histogram}, {@code trace_start}, {@code bdev_reset_iostat}.
 *   <li>{@code tests/chroot/fio-libblkio.sh --jobs vw64k}: fio writes the first 256 MiB sequentially in 64 KiB
 *       blocks (4096 writes, queue depth 8) and reports its I/O counts in JSON.
 *   <li>The counters equal fio's ({@code num_write_ops} = fio's {@code total_ios}, {@code bytes_written} = its
 *       {@code io_bytes}, no reads, no errors, nothing in flight); the {@code total} and {@code device} write
 *       histograms have one sample per write; the trace holds every write once, with its offset and length, in
 *       4096 events that cover the 256 MiB exactly, each with every timestamp taken and in order.
 * </ol>
 *
 * <p>Logs in {@code dist/target/it-logs/StatsIT/}. Skipped only when not root or when the tool chroot cannot be built.
 */
@Tag("integration")
class StatsIT {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final long DISK_BYTES = 1L << 30;
    private static final long WRITTEN_BYTES = 256L << 20;
    private static final int BLOCK_BYTES = 65536;
    private static final Duration READY_TIMEOUT = Duration.ofSeconds(120);
    private static final Duration FIO_TIMEOUT = Duration.ofMinutes(10);

    @Test
    @Timeout(value = 40, unit = TimeUnit.MINUTES)
    void shouldCountExactlyWhatFioDidWhenFioWritesThroughLibblkio() throws Exception {
        ItEnv env = ItEnv.forTest(getClass());
        ToolChroot.ensure(env);
        Path socketDir = ToolChroot.tmpDir("vhostd-stats-");
        Path image = env.workDir().resolve("StatsIT-" + ProcessHandle.current().pid() + ".img");
        Files.deleteIfExists(image);
        MasterConfig config = new MasterConfig(socketDir, image, DISK_BYTES, 2);
        Path fioOut = socketDir.resolve("fio");
        try {
            config.write();
            try (VhostdMaster master =
                            VhostdMaster.start(env, config, env.logDir().resolve("master.log"));
                    RpcClient rpc = connect(master, config)) {
                assertEquals(
                        true,
                        call(rpc, "bdev_enable_histogram", "{\"name\":\"disk0\",\"enable\":true}")
                                .asBoolean());
                assertEquals(
                        true,
                        call(rpc, "trace_start", "{\"controller\":\"vhost.0\"}").asBoolean());
                assertEquals(true, call(rpc, "bdev_reset_iostat", null).asBoolean());

                Path log = env.logDir().resolve("fio-libblkio.log");
                int rc = ToolChroot.run(
                        env,
                        List.of(
                                env.repoPath("tests/chroot/fio-libblkio.sh").toString(),
                                "--socket",
                                config.vhostSocket().toString(),
                                "--jobs",
                                "vw64k",
                                "--out",
                                fioOut.toString()),
                        log,
                        FIO_TIMEOUT);
                assertEquals(0, rc, "fio failed\n" + Files.readString(log) + "\n" + master.logTail());
                JsonNode fio = fioJob(fioOut.resolve("vw64k.json"));
                long fioWrites = fio.path("write").path("total_ios").asLong();
                long fioBytes = fio.path("write").path("io_bytes").asLong();
                step(
                        "fio: %d writes, %d bytes, %d reads",
                        fioWrites, fioBytes, fio.path("read").path("total_ios").asLong());
                assertEquals(WRITTEN_BYTES / BLOCK_BYTES, fioWrites);
                assertEquals(WRITTEN_BYTES, fioBytes);

                JsonNode iostat = call(rpc, "bdev_get_iostat", "{\"name\":\"disk0\",\"per_queue\":true}");
                Files.writeString(env.logDir().resolve("iostat.json"), iostat.toPrettyString(), StandardCharsets.UTF_8);
                JsonNode disk = iostat.path("bdevs").get(0);
                assertEquals(fioWrites, disk.path("num_write_ops").asLong(), iostat.toPrettyString());
                assertEquals(fioBytes, disk.path("bytes_written").asLong());
                assertEquals(
                        fio.path("read").path("total_ios").asLong(),
                        disk.path("num_read_ops").asLong());
                assertEquals(0, disk.path("io_errors").asLong());
                assertEquals(0, disk.path("queue_depth").asLong());
                assertTrue(disk.path("write_latency_ticks").asLong() > 0);
                assertTrue(disk.path("io_time_ticks").asLong() > 0);
                assertTrue(disk.path("weighted_io_time_ticks").asLong()
                        >= disk.path("io_time_ticks").asLong());

                JsonNode histograms = call(rpc, "bdev_get_histogram", "{\"name\":\"disk0\",\"op\":\"write\"}");
                Files.writeString(
                        env.logDir().resolve("histogram.json"), histograms.toPrettyString(), StandardCharsets.UTF_8);
                for (JsonNode h : histograms.path("histograms")) {
                    step(
                            "histogram %s/%s: count %d p50 %d ns p99 %d ns",
                            h.path("segment").asText(),
                            h.path("op").asText(),
                            h.path("count").asLong(),
                            h.path("percentiles").path("p50").asLong(),
                            h.path("percentiles").path("p99").asLong());
                    if (List.of("total", "device").contains(h.path("segment").asText())) {
                        assertEquals(
                                fioWrites,
                                h.path("count").asLong(),
                                h.path("segment").asText());
                    }
                }
                assertEquals(6, histograms.path("histograms").size(), histograms.toPrettyString());

                assertTrace(rpc, fioWrites);
                assertEquals(true, call(rpc, "trace_stop", null).asBoolean());
            }
        } finally {
            ToolChroot.keepLogs(fioOut, env.logDir().resolve("fio"));
            Files.deleteIfExists(image);
            ToolChroot.deleteTree(socketDir);
        }
    }

    /** Every write once, sequential offsets covering the written range, every timestamp taken and in order. */
    private static void assertTrace(RpcClient rpc, long writes) throws Exception {
        JsonNode trace = call(rpc, "trace_get_events", "{\"max\":65536}");
        JsonNode events = trace.path("events");
        assertEquals(0, trace.path("dropped").asLong());
        BitSet blocks = new BitSet();
        long previousUsed = 0;
        int writeEvents = 0;
        for (JsonNode e : events) {
            if (!e.path("op").asText().equals("write")) {
                continue;
            }
            writeEvents++;
            assertEquals("ok", e.path("status").asText());
            assertEquals(BLOCK_BYTES, e.path("length_bytes").asLong(), e.toString());
            long offset = e.path("offset_bytes").asLong();
            assertEquals(0, offset % BLOCK_BYTES, e.toString());
            assertTrue(offset < WRITTEN_BYTES, e.toString());
            int block = (int) (offset / BLOCK_BYTES);
            assertTrue(!blocks.get(block), "written twice: " + e);
            blocks.set(block);
            long previous = 0;
            for (String t : List.of(
                    "fetch_ns", "submit_ns", "device_submit_ns", "device_complete_ns", "used_ns", "notify_ns")) {
                long ns = e.path(t).asLong();
                assertTrue(ns > 0 && ns >= previous, t + " out of order: " + e);
                previous = ns;
            }
            assertTrue(e.path("used_ns").asLong() >= previousUsed, "oldest first: " + e);
            previousUsed = e.path("used_ns").asLong();
        }
        assertEquals(writes, writeEvents);
        assertEquals(writes, blocks.cardinality());
        assertEquals(0, call(rpc, "trace_get_events", null).path("events").size(), "each event is returned once");
        step("trace: %d write events, every block once, timestamps in order", writeEvents);
    }

    /** Waits until the master serves the controller and its RPC socket exists (it listens last), then connects. */
    private static RpcClient connect(VhostdMaster master, MasterConfig config) throws Exception {
        step("master ready in %d ms", master.awaitReady(READY_TIMEOUT).toMillis());
        long deadlineNs = System.nanoTime() + READY_TIMEOUT.toNanos();
        while (!Files.exists(config.rpcSocket())) {
            assertTrue(System.nanoTime() < deadlineNs, "no RPC socket " + config.rpcSocket() + "\n" + master.logTail());
            Thread.sleep(100);
        }
        return RpcClient.connect(config.rpcSocket(), Duration.ofSeconds(30));
    }

    private static JsonNode call(RpcClient rpc, String method, String params) throws Exception {
        return rpc.call(method, params == null ? null : JSON.readTree(params));
    }

    /** fio's JSON output (it may be preceded by notices) → its only job. */
    private static JsonNode fioJob(Path json) throws Exception {
        String text = Files.readString(json, StandardCharsets.UTF_8);
        return JSON.readTree(text.substring(text.indexOf('{'))).path("jobs").get(0);
    }

    private static void step(String format, Object... args) {
        System.out.printf("[StatsIT] " + format + "%n", args);
    }
}
