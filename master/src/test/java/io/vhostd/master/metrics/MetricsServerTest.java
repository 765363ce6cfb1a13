package io.vhostd.master.metrics;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vertx.core.Vertx;
import io.vhostd.master.stats.HistogramSnapshot;
import io.vhostd.shm.stats.IoCounters;
import io.vhostd.shm.stats.LatencyBuckets;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The endpoint over real HTTP on a loopback port, scraped and parsed as Prometheus would: counters present and
 * increasing after I/O (a fake {@link StatsSource} whose counters the test advances), a histogram family with {@code
 * le} buckets that are cumulative and end in {@code +Inf}, JVM metrics, bdevs appearing and vanishing.
 */
@Timeout(60)
class MetricsServerTest {
    /** One sample line of the text format: name, labels, value. */
    private static final Pattern SAMPLE = Pattern.compile("^([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{[^}]*})? (\\S+)$");

    private final Map<String, IoCounters> totals = new ConcurrentHashMap<>();
    private final Map<String, List<HistogramSnapshot>> histograms = new ConcurrentHashMap<>();
    private Vertx vertx;
    private MetricsServer server;
    private HttpClient http;

    @BeforeEach
    void setUp() {
        vertx = Vertx.vertx();
        server = new MetricsServer(vertx, new StatsSource() {
            @Override
            public Map<String, IoCounters> bdevTotals() {
                return Map.copyOf(totals);
            }

            @Override
            public List<HistogramSnapshot> histograms(String bdev) {
                return histograms.getOrDefault(bdev, List.of());
            }
        });
        server.start("127.0.0.1", 0).await();
        http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    }

    @AfterEach
    void tearDown() {
        http.close();
        server.close();
        vertx.close().await();
    }

    private HttpResponse<String> get(String path, String accept) throws IOException, InterruptedException {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + path))
                .timeout(Duration.ofSeconds(20));
        if (accept != null) {
            b.header("Accept", accept);
        }
        return http.send(b.GET().build(), HttpResponse.BodyHandlers.ofString());
    }

    /** Every sample, keyed {@code name{labels}}. */
    private Map<String, Double> scrape() throws IOException, InterruptedException {
        HttpResponse<String> r = get("/metrics", null);
        assertEquals(200, r.statusCode(), r.body());
        assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("text/plain; version=0.0.4"));
        Map<String, Double> samples = new LinkedHashMap<>();
        for (String line : r.body().split("\n")) {
            if (line.isEmpty() || line.startsWith("#")) {
                continue;
            }
            Matcher m = SAMPLE.matcher(line);
            assertTrue(m.matches(), "not a sample line: " + line);
            String labels = m.group(2) == null ? "" : m.group(2);
            samples.put(m.group(1) + labels, Double.parseDouble(m.group(3).replace("+Inf", "Infinity")));
        }
        return samples;
    }

    private static IoCounters counters(long reads, long readBytes, long writes, long errors, long depth, long ioNs) {
        return new IoCounters(
                reads,
                readBytes,
                writes,
                writes * 4096,
                1,
                0,
                0,
                0,
                0,
                reads * 50_000,
                writes * 80_000,
                0,
                0,
                0,
                errors,
                depth,
                ioNs,
                2 * ioNs);
    }

    @Test
    void shouldExposeIncreasingCountersWhenIoHappens() throws Exception {
        totals.put("disk0", counters(10, 40960, 5, 0, 2, 1_500_000_000L));
        Map<String, Double> first = scrape();
        assertEquals(10.0, first.get("vhostd_bdev_read_ops_total{bdev=\"disk0\"}"));
        assertEquals(40960.0, first.get("vhostd_bdev_read_bytes_total{bdev=\"disk0\"}"));
        assertEquals(5.0, first.get("vhostd_bdev_write_ops_total{bdev=\"disk0\"}"));
        assertEquals(20480.0, first.get("vhostd_bdev_write_bytes_total{bdev=\"disk0\"}"));
        assertEquals(1.0, first.get("vhostd_bdev_flush_ops_total{bdev=\"disk0\"}"));
        assertEquals(0.0, first.get("vhostd_bdev_io_errors_total{bdev=\"disk0\"}"));
        assertEquals(1.5, first.get("vhostd_bdev_io_time_seconds_total{bdev=\"disk0\"}"), 1e-9);
        assertEquals(3.0, first.get("vhostd_bdev_weighted_io_time_seconds_total{bdev=\"disk0\"}"), 1e-9);
        assertEquals(0.0005, first.get("vhostd_bdev_read_latency_seconds_total{bdev=\"disk0\"}"), 1e-12);
        assertEquals(2.0, first.get("vhostd_bdev_queue_depth{bdev=\"disk0\"}"));
        assertNotNull(first.get("vhostd_bdev_write_zeroes_ops_total{bdev=\"disk0\"}"));
        assertNotNull(first.get("vhostd_bdev_unmap_bytes_total{bdev=\"disk0\"}"));

        // "I/O": the data path's counters move on; the next scrape sees them, monotonic
        totals.put("disk0", counters(25, 102400, 9, 1, 0, 2_000_000_000L));
        Map<String, Double> second = scrape();
        for (String name :
                List.of("vhostd_bdev_read_ops_total", "vhostd_bdev_read_bytes_total", "vhostd_bdev_write_ops_total")) {
            String key = name + "{bdev=\"disk0\"}";
            assertTrue(second.get(key) > first.get(key), key + ": " + first.get(key) + " -> " + second.get(key));
        }
        assertEquals(25.0, second.get("vhostd_bdev_read_ops_total{bdev=\"disk0\"}"));
        assertEquals(1.0, second.get("vhostd_bdev_io_errors_total{bdev=\"disk0\"}"));
        assertEquals(0.0, second.get("vhostd_bdev_queue_depth{bdev=\"disk0\"}"));
    }

    @Test
    void shouldExposeRealHistogramWhenBucketsComeFromStats() throws Exception {
        totals.put("disk0", counters(4, 16384, 0, 0, 0, 0));
        // 3 reads around 3 µs, 1 read around 40 ms: fine buckets as the data path counts them
        int fast = LatencyBuckets.bucketIndex(3_000);
        int slow = LatencyBuckets.bucketIndex(40_000_000);
        histograms.put(
                "disk0",
                List.of(new HistogramSnapshot(
                        "total",
                        "read",
                        4,
                        3 * 3_000 + 40_000_000,
                        new long[] {LatencyBuckets.bucketHighNs(fast), LatencyBuckets.bucketHighNs(slow)},
                        new long[] {3, 1})));
        Map<String, Double> s = scrape();
        String labels = "bdev=\"disk0\",op=\"read\",segment=\"total\"";
        assertEquals(4.0, s.get("vhostd_bdev_latency_seconds_count{" + labels + "}"));
        assertEquals(0.040009, s.get("vhostd_bdev_latency_seconds_sum{" + labels + "}"), 1e-12);
        List<double[]> buckets = new ArrayList<>();
        Pattern le = Pattern.compile(
                "vhostd_bdev_latency_seconds_bucket\\{" + labels.replace("\"", "\\\"") + ",le=\"([^\"]+)\"}");
        for (Map.Entry<String, Double> e : s.entrySet()) {
            Matcher m = le.matcher(e.getKey());
            if (m.matches()) {
                double bound = m.group(1).equals("+Inf") ? Double.POSITIVE_INFINITY : Double.parseDouble(m.group(1));
                buckets.add(new double[] {bound, e.getValue()});
            }
        }
        assertEquals(BdevMetrics.LE_NS.length + 1, buckets.size(), "one bucket per le bound plus +Inf");
        double last = 0;
        double lastBound = 0;
        for (double[] b : buckets) {
            assertTrue(b[0] > lastBound, "le ascending");
            assertTrue(b[1] >= last, "cumulative");
            // the fine buckets fall entirely under one le: exact counts at the 5 µs and 50 ms bounds
            if (b[0] < 2.9e-6) {
                assertEquals(0.0, b[1], "below 3 µs at le=" + b[0]);
            }
            if (b[0] > 3.1e-6 && b[0] < 0.039) {
                assertEquals(3.0, b[1], "le=" + b[0]);
            }
            if (b[0] > 0.041) {
                assertEquals(4.0, b[1], "le=" + b[0]);
            }
            last = b[1];
            lastBound = b[0];
        }
        assertEquals(Double.POSITIVE_INFINITY, lastBound);
        assertEquals(4.0, last);
    }

    @Test
    void shouldPutEachFineBucketUnderOneLeWhenRegrouping() {
        for (long le : BdevMetrics.LE_NS) {
            // each bound is a fine bucket's inclusive upper edge: the next value starts a new fine bucket
            assertEquals(le, LatencyBuckets.bucketHighNs(LatencyBuckets.bucketIndex(le)));
            assertEquals(LatencyBuckets.bucketIndex(le) + 1, LatencyBuckets.bucketIndex(le + 1));
        }
        assertEquals(1_023, BdevMetrics.LE_NS[0]);
        assertTrue(BdevMetrics.LE_NS[BdevMetrics.LE_NS.length - 1] >= 10_000_000_000L);
    }

    @Test
    void shouldAddAndDropSeriesWhenBdevsComeAndGo() throws Exception {
        assertFalse(scrape().keySet().stream().anyMatch(k -> k.startsWith("vhostd_bdev_")));
        totals.put("a", counters(1, 512, 0, 0, 0, 0));
        totals.put("b", counters(2, 1024, 0, 0, 0, 0));
        Map<String, Double> both = scrape();
        assertEquals(1.0, both.get("vhostd_bdev_read_ops_total{bdev=\"a\"}"));
        assertEquals(2.0, both.get("vhostd_bdev_read_ops_total{bdev=\"b\"}"));
        totals.remove("a");
        Map<String, Double> one = scrape();
        assertFalse(one.containsKey("vhostd_bdev_read_ops_total{bdev=\"a\"}"));
        assertEquals(2.0, one.get("vhostd_bdev_read_ops_total{bdev=\"b\"}"));
    }

    @Test
    void shouldIncludeJvmMetricsWhenScraped() throws Exception {
        Map<String, Double> s = scrape();
        assertTrue(s.keySet().stream().anyMatch(k -> k.startsWith("jvm_memory_used_bytes{")), s.keySet()::toString);
        assertTrue(s.containsKey("process_uptime_seconds"));
        assertTrue(s.keySet().stream().anyMatch(k -> k.startsWith("jvm_threads_live_threads")));
    }

    @Test
    void shouldAnswerOpenMetricsWhenAsked() throws Exception {
        totals.put("disk0", counters(1, 512, 0, 0, 0, 0));
        HttpResponse<String> r = get("/metrics", "application/openmetrics-text; version=1.0.0");
        assertEquals(200, r.statusCode());
        assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("application/openmetrics-text"));
        assertTrue(r.body().contains("vhostd_bdev_read_ops_total{bdev=\"disk0\"} 1"), r.body());
        assertTrue(r.body().endsWith("# EOF\n"));
    }

    @Test
    void shouldRefuseWhenPathOrMethodIsWrong() throws Exception {
        assertEquals(404, get("/", null).statusCode());
        assertEquals(404, get("/metrics/x", null).statusCode());
        HttpResponse<String> post = http.send(
                HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + "/metrics"))
                        .POST(HttpRequest.BodyPublishers.ofString("x"))
                        .timeout(Duration.ofSeconds(20))
                        .build(),
                HttpResponse.BodyHandlers.ofString());
        assertEquals(405, post.statusCode());
        assertEquals("GET, HEAD", post.headers().firstValue("Allow").orElse(""));
    }
}
