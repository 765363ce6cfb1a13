package io.vhostd.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.vhostd.rpc.RpcClient;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Issue #5 Prometheus endpoint and derived health end to end: {@code bin/vhostd master} with {@code prometheus.listen}
 * serves a file bdev; fio (libblkio engine, no VM) writes 256 MiB through it; the {@code /metrics} scrape, parsed as
 * Prometheus would, shows the write counters moved from 0 to exactly fio's counts and the latency histogram with its
 * {@code le} buckets; {@code bdev_nvme_get_controller_health_info} derives the same I/O for the file bdev.
 *
 * <p>Logs (master, fio, both scrapes, the health result) in {@code dist/target/it-logs/PrometheusIT/}. Skipped only
 * when not root or when the tool chroot cannot be built.
 */
@Tag("integration")
class PrometheusIT {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final long DISK_BYTES = 1L << 30;
    private static final long WRITTEN_BYTES = 256L << 20;
    private static final int BLOCK_BYTES = 65536;
    private static final Duration READY_TIMEOUT = Duration.ofSeconds(120);
    private static final Duration FIO_TIMEOUT = Duration.ofMinutes(10);
    private static final Pattern SAMPLE = Pattern.compile("^([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{[^}]*})? (\\S+)$");

    @Test
    @Timeout(value = 40, unit = TimeUnit.MINUTES)
    void shouldCountFioWritesInScrapeAndHealthWhenFioWritesThroughLibblkio() throws Exception {
        ItEnv env = ItEnv.forTest(getClass());
        ToolChroot.ensure(env);
        Path socketDir = ToolChroot.tmpDir("vhostd-prom-");
        Path image =
                env.workDir().resolve("PrometheusIT-" + ProcessHandle.current().pid() + ".img");
        Files.deleteIfExists(image);
        MasterConfig config = new MasterConfig(socketDir, image, DISK_BYTES, 2);
        Path fioOut = socketDir.resolve("fio");
        int port = freePort();
        try {
            config.write();
            Files.writeString(
                    config.configFile(),
                    "prometheus: {listen: \"127.0.0.1:" + port + "\"}\n",
                    StandardCharsets.UTF_8,
                    StandardOpenOption.APPEND);
            try (VhostdMaster master =
                            VhostdMaster.start(env, config, env.logDir().resolve("master.log"));
                    HttpClient http = HttpClient.newHttpClient()) {
                step("master ready in %d ms", master.awaitReady(READY_TIMEOUT).toMillis());
                // the controller socket listens before the slave, the RPC socket and the endpoint are up
                awaitEndpoint(http, port, master);
                try (RpcClient rpc = RpcClient.connect(config.rpcSocket(), Duration.ofSeconds(30))) {
                    assertTrue(rpc.call("bdev_enable_histogram", JSON.readTree("{\"name\":\"disk0\",\"enable\":true}"))
                            .asBoolean());
                }
                Map<String, Double> before = scrape(http, port, env.logDir().resolve("scrape-before.txt"));
                String disk = "{bdev=\"disk0\"}";
                assertEquals(0.0, before.get("vhostd_bdev_write_ops_total" + disk), "present before any I/O");
                assertTrue(before.keySet().stream().anyMatch(k -> k.startsWith("jvm_memory_used_bytes{")));

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
                long writes = WRITTEN_BYTES / BLOCK_BYTES;

                Map<String, Double> after = scrape(http, port, env.logDir().resolve("scrape-after.txt"));
                assertEquals((double) writes, after.get("vhostd_bdev_write_ops_total" + disk));
                assertEquals((double) WRITTEN_BYTES, after.get("vhostd_bdev_write_bytes_total" + disk));
                assertEquals(0.0, after.get("vhostd_bdev_io_errors_total" + disk));
                assertEquals(0.0, after.get("vhostd_bdev_queue_depth" + disk));
                assertTrue(after.get("vhostd_bdev_write_latency_seconds_total" + disk) > 0);
                assertTrue(after.get("vhostd_bdev_io_time_seconds_total" + disk)
                        > before.get("vhostd_bdev_io_time_seconds_total" + disk));
                String total = "{bdev=\"disk0\",op=\"write\",segment=\"total\"";
                assertEquals((double) writes, after.get("vhostd_bdev_latency_seconds_count" + total + "}"));
                assertEquals(
                        (double) writes, after.get("vhostd_bdev_latency_seconds_bucket" + total + ",le=\"+Inf\"}"));
                long leBuckets = after.keySet().stream()
                        .filter(k -> k.startsWith("vhostd_bdev_latency_seconds_bucket" + total + ",le="))
                        .count();
                step("scrape: %d write ops, %d le buckets for total/write", writes, leBuckets);
                assertTrue(leBuckets > 10, "a real histogram with le buckets");

                try (RpcClient rpc = RpcClient.connect(config.rpcSocket(), Duration.ofSeconds(30))) {
                    JsonNode health =
                            rpc.call("bdev_nvme_get_controller_health_info", JSON.readTree("{\"name\":\"disk0\"}"));
                    Files.writeString(
                            env.logDir().resolve("health.json"), health.toPrettyString(), StandardCharsets.UTF_8);
                    assertEquals("derived", health.path("source").asText());
                    assertEquals(writes, health.path("host_write_commands").asLong());
                    // ⌈268435456 / 512000⌉
                    assertEquals(525, health.path("data_units_written").asLong());
                    assertEquals(0, health.path("media_errors").asLong());
                    assertTrue(health.path("temperature_celsius").isNull());
                }
            }
        } finally {
            ToolChroot.keepLogs(fioOut, env.logDir().resolve("fio"));
            Files.deleteIfExists(image);
            ToolChroot.deleteTree(socketDir);
        }
    }

    /** Polls until GET /metrics answers (the master starts it right after its RPC socket). */
    private static void awaitEndpoint(HttpClient http, int port, VhostdMaster master) throws Exception {
        long deadlineNs = System.nanoTime() + READY_TIMEOUT.toNanos();
        while (System.nanoTime() < deadlineNs) {
            try {
                HttpResponse<Void> r = http.send(
                        HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/metrics"))
                                .method("HEAD", HttpRequest.BodyPublishers.noBody())
                                .timeout(Duration.ofSeconds(10))
                                .build(),
                        HttpResponse.BodyHandlers.discarding());
                if (r.statusCode() == 200) {
                    return;
                }
            } catch (java.net.ConnectException e) {
                // not listening yet
            }
            Thread.sleep(100);
        }
        throw new AssertionError("no Prometheus endpoint on port " + port + "\n" + master.logTail());
    }

    private static int freePort() throws Exception {
        try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    /** GET /metrics, kept in {@code keep}, parsed into {@code name{labels}} → value. */
    private static Map<String, Double> scrape(HttpClient http, int port, Path keep) throws Exception {
        HttpResponse<String> r = http.send(
                HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/metrics"))
                        .timeout(Duration.ofSeconds(30))
                        .build(),
                HttpResponse.BodyHandlers.ofString());
        Files.writeString(keep, r.body(), StandardCharsets.UTF_8);
        assertEquals(200, r.statusCode(), r.body());
        Map<String, Double> samples = new LinkedHashMap<>();
        for (String line : r.body().split("\n")) {
            if (line.isEmpty() || line.startsWith("#")) {
                continue;
            }
            Matcher m = SAMPLE.matcher(line);
            assertTrue(m.matches(), "not a sample line: " + line);
            samples.put(
                    m.group(1) + (m.group(2) == null ? "" : m.group(2)),
                    Double.parseDouble(m.group(3).replace("+Inf", "Infinity")));
        }
        return samples;
    }

    private static void step(String format, Object... args) {
        System.out.printf("[PrometheusIT] " + format + "%n", args);
    }
}
