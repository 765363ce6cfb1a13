package io.vhostd.master;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.vhostd.master.bdev.FakeNvmeTree;
import io.vhostd.master.config.VhostdConfig;
import io.vhostd.master.hugepages.HugepagePool;
import io.vhostd.master.stats.HistogramSnapshot;
import io.vhostd.rpc.RpcClient;
import io.vhostd.rpc.RpcException;
import io.vhostd.shm.stats.IoCounters;
import io.vhostd.shm.stats.QueueStatsWriter;
import io.vhostd.shm.stats.StatsDescriptor;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The stats methods of issue #5 over the master's RPC socket: an in-process {@link Master} without a slave; the test
 * plays the slave's data path by writing the controllers' stats regions with {@link QueueStatsWriter}.
 */
@Timeout(120)
class MasterStatsRpcTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;

    private Master master;
    private RpcClient client;

    @BeforeEach
    void setUp() throws Exception {
        FakeNvmeTree nvme = new FakeNvmeTree(dir.resolve("hw"));
        Path proc = dir.resolve("hw").resolve("proc");
        Path sys = nvme.sysRoot();
        Files.createDirectories(proc.resolve("sys/vm"));
        Files.createDirectories(sys.resolve("kernel/mm/hugepages/hugepages-2048kB"));
        Files.writeString(proc.resolve("sys/vm/nr_hugepages"), "0\n");
        Files.writeString(sys.resolve("kernel/mm/hugepages/hugepages-2048kB/free_hugepages"), "0\n");
        String yaml = """
                run_dir: $DIR/run
                hugepages: {enabled: false}
                bdevs:
                  - {name: null0, type: null, num_blocks: 2048}
                  - {name: idle0, type: null, num_blocks: 64}
                controllers:
                  - {name: vhost-blk0, type: vhost-user-blk, bdev: null0, socket: vb0.sock, num_queues: 2}
                """.replace("$DIR", dir.toString());
        VhostdConfig cfg = VhostdConfig.parse(yaml);
        master = new Master(
                cfg, new Master.Options(false, nvme.probe(), new HugepagePool(proc, sys, HugepagePool.KERNEL_FILES)));
        master.start();
        client = RpcClient.connect(Path.of(cfg.rpcSocket()), Duration.ofSeconds(30));
    }

    @AfterEach
    void tearDown() throws Exception {
        if (client != null) {
            client.close();
        }
        if (master != null) {
            master.close();
        }
    }

    private JsonNode call(String method, String params) throws Exception {
        return client.call(method, params == null ? null : JSON.readTree(params));
    }

    private MemorySegment region() {
        return master.stats().region("vhost-blk0").segment();
    }

    /** What the data path does for {@code reads} 4 KiB reads of {@code latencyNs} each on queue {@code queue}. */
    private void reads(int queue, int reads, long latencyNs) {
        QueueStatsWriter w = QueueStatsWriter.attach(region(), queue);
        long now = System.nanoTime();
        w.fetched(reads, now);
        for (int i = 0; i < reads; i++) {
            w.completed(StatsDescriptor.OP_READ, 4096, latencyNs, false);
            if ((w.flags() & StatsDescriptor.HISTOGRAM_ENABLED_MASK) != 0) {
                w.recordLatency(StatsDescriptor.SEGMENT_TOTAL, StatsDescriptor.OP_READ, latencyNs);
            }
            if ((w.flags() & StatsDescriptor.TRACE_ENABLED_MASK) != 0) {
                w.trace(StatsDescriptor.OP_READ, 0, 4096L * i, 4096, now, now + 1, now + 2, now + 3, now + 4, now + 5);
            }
        }
        w.published(now + latencyNs);
    }

    private void assertError(String name, String method, String params, String messagePart) {
        RpcException e = assertThrows(RpcException.class, () -> call(method, params));
        assertEquals(name, e.error().name(), e.getMessage());
        assertTrue(e.getMessage().contains(messagePart), e.getMessage());
    }

    @Test
    void shouldSumQueuesAndControllersWhenIostatAskedPerQueue() throws Exception {
        reads(0, 3, 1000);
        reads(1, 2, 2000);

        JsonNode all = call("bdev_get_iostat", null);
        assertEquals(1_000_000_000L, all.path("tick_rate").asLong());
        assertTrue(all.path("ticks").asLong() > 0);
        assertEquals(2, all.path("bdevs").size(), "every bdev, also those without a controller");

        JsonNode r = call("bdev_get_iostat", "{\"name\":\"null0\",\"per_queue\":true}");
        JsonNode b = r.path("bdevs").get(0);
        assertEquals("null0", b.path("name").asText());
        assertEquals(5, b.path("num_read_ops").asLong());
        assertEquals(5 * 4096, b.path("bytes_read").asLong());
        assertEquals(3 * 1000 + 2 * 2000, b.path("read_latency_ticks").asLong());
        assertEquals(0, b.path("queue_depth").asLong());
        JsonNode ctrl = b.path("controllers").get(0);
        assertEquals("vhost-blk0", ctrl.path("name").asText());
        assertEquals(5, ctrl.path("num_read_ops").asLong());
        assertEquals(0, ctrl.path("queues").get(0).path("index").asInt());
        assertEquals(3, ctrl.path("queues").get(0).path("num_read_ops").asLong());
        assertEquals(2, ctrl.path("queues").get(1).path("num_read_ops").asLong());
        for (String field : List.of(
                "bytes_written",
                "num_flush_ops",
                "bytes_unmapped",
                "io_errors",
                "io_time_ticks",
                "weighted_io_time_ticks")) {
            assertTrue(b.has(field), field);
        }
        assertFalse(call("bdev_get_iostat", "{\"name\":\"null0\"}")
                .path("bdevs")
                .get(0)
                .has("controllers"));
    }

    @Test
    void shouldCountFromZeroAfterResetWhileTotalsStayMonotonic() throws Exception {
        reads(0, 4, 1000);
        long startedTicks = call("bdev_get_iostat", "{\"name\":\"null0\"}")
                .path("bdevs")
                .get(0)
                .path("start_ticks")
                .asLong();
        assertEquals(true, call("bdev_reset_iostat", "{\"name\":\"null0\"}").asBoolean());
        reads(1, 1, 1000);

        JsonNode sample = call("bdev_get_iostat", "{\"name\":\"null0\"}");
        JsonNode b = sample.path("bdevs").get(0);
        assertEquals(1, b.path("num_read_ops").asLong());
        long resetTicks = b.path("start_ticks").asLong();
        assertTrue(
                startedTicks < resetTicks && resetTicks < sample.path("ticks").asLong(),
                "start_ticks moves to the reset: " + startedTicks + " -> " + resetTicks);
        IoCounters totals = master.stats().bdevTotals().get("null0");
        assertEquals(5, totals.numReadOps(), "bdevTotals ignores bdev_reset_iostat");
        assertEquals(true, call("bdev_reset_iostat", null).asBoolean());
        assertEquals(
                0,
                call("bdev_get_iostat", "{\"name\":\"null0\"}")
                        .path("bdevs")
                        .get(0)
                        .path("num_read_ops")
                        .asLong());
    }

    @Test
    void shouldKeepCountsOfDeletedControllerInItsBdevWhenControllerDeleted() throws Exception {
        reads(0, 2, 1000);
        assertEquals(
                true,
                call("vhost_delete_controller", "{\"ctrlr\":\"vhost-blk0\"}").asBoolean());

        assertEquals(null, master.stats().region("vhost-blk0"));
        assertEquals(2, master.stats().bdevTotals().get("null0").numReadOps());
        JsonNode b = call("bdev_get_iostat", "{\"name\":\"null0\",\"per_controller\":true}")
                .path("bdevs")
                .get(0);
        assertEquals(2, b.path("num_read_ops").asLong());
        assertEquals(0, b.path("controllers").size());
        assertError("no_such_controller", "trace_start", "{\"controller\":\"vhost-blk0\"}", "vhost-blk0");
    }

    @Test
    void shouldReportHistogramOnlyWhileEnabled() throws Exception {
        JsonNode off = call("bdev_get_histogram", "{\"name\":\"null0\"}");
        assertFalse(off.path("enabled").asBoolean());
        assertEquals(0, off.path("histograms").size());

        reads(0, 2, 900); // before enabling: not in the histogram
        assertEquals(
                true,
                call("bdev_enable_histogram", "{\"name\":\"null0\",\"enable\":true}")
                        .asBoolean());
        assertEquals(StatsDescriptor.HISTOGRAM_ENABLED_MASK, StatsDescriptor.flagsOpaque(region()));
        reads(0, 3, 48_000);
        reads(1, 1, 53_000);

        JsonNode h = call("bdev_get_histogram", "{\"name\":\"null0\",\"segment\":\"total\",\"op\":\"read\"}");
        assertTrue(h.path("enabled").asBoolean());
        assertEquals(1, h.path("histograms").size());
        JsonNode total = h.path("histograms").get(0);
        assertEquals("total", total.path("segment").asText());
        assertEquals("read", total.path("op").asText());
        assertEquals(4, total.path("count").asLong());
        assertEquals(3 * 48_000 + 53_000, total.path("sum_ticks").asLong());
        assertEquals(49_151, total.path("percentiles").path("p50").asLong());
        assertEquals(53_247, total.path("percentiles").path("p99").asLong(), "the bucket's upper bound");
        assertEquals(2, total.path("buckets").size());
        assertEquals(3, total.path("buckets").get(0).path("count").asLong());
        List<HistogramSnapshot> snapshots = master.stats().histograms("null0");
        assertEquals(1, snapshots.size());
        assertEquals(4, snapshots.get(0).count());

        call("bdev_enable_histogram", "{\"name\":\"null0\",\"enable\":false}");
        assertEquals(0, StatsDescriptor.flagsOpaque(region()));
        assertEquals(
                0,
                call("bdev_get_histogram", "{\"name\":\"null0\"}")
                        .path("histograms")
                        .size());
    }

    @Test
    void shouldReturnTraceEventsOnceAndOnlyAfterStartWhenTracing() throws Exception {
        reads(0, 1, 100); // tracing off: nothing recorded
        assertEquals(
                true, call("trace_start", "{\"controller\":\"vhost-blk0\"}").asBoolean());
        assertEquals(StatsDescriptor.TRACE_ENABLED_MASK, StatsDescriptor.flagsOpaque(region()));
        reads(1, 3, 100);

        JsonNode first = call("trace_get_events", "{\"max\":2}");
        assertEquals(2, first.path("events").size());
        assertEquals(0, first.path("dropped").asLong());
        JsonNode e = first.path("events").get(0);
        assertEquals("vhost-blk0", e.path("controller").asText());
        assertEquals(1, e.path("queue").asInt());
        assertEquals("read", e.path("op").asText());
        assertEquals("ok", e.path("status").asText());
        assertEquals(0, e.path("offset_bytes").asLong());
        assertEquals(4096, e.path("length_bytes").asLong());
        assertNotNull(e.get("notify_ns"));
        JsonNode rest = call("trace_get_events", null);
        assertEquals(1, rest.path("events").size());
        assertEquals(8192, rest.path("events").get(0).path("offset_bytes").asLong());
        assertEquals(0, call("trace_get_events", null).path("events").size());

        assertEquals(true, call("trace_stop", null).asBoolean());
        assertEquals(0, StatsDescriptor.flagsOpaque(region()));
    }

    @ParameterizedTest
    @CsvSource(
            delimiter = '|',
            value = {
                "bdev_get_iostat       | {\"name\":\"nope\"}                                | no_such_bdev       | nope",
                "bdev_reset_iostat     | {\"name\":\"nope\"}                                | no_such_bdev       | nope",
                "bdev_enable_histogram | {\"name\":\"nope\",\"enable\":true}                | no_such_bdev       | nope",
                "bdev_enable_histogram | {\"name\":\"null0\"}                               | invalid_params     | enable",
                "bdev_get_histogram    | {\"name\":\"nope\"}                                | no_such_bdev       | nope",
                "bdev_get_histogram    | {\"name\":\"null0\",\"segment\":\"disk\"}          | invalid_params     | segment",
                "bdev_get_histogram    | {\"name\":\"null0\",\"op\":\"trim\"}               | invalid_params     | op",
                "bdev_get_iostat       | {\"per_queue\":\"yes\"}                            | invalid_params     | per_queue",
                "trace_start           | {\"controller\":\"nope\"}                          | no_such_controller | nope",
                "trace_stop            | {\"controller\":\"nope\"}                          | no_such_controller | nope",
                "trace_get_events      | {\"controller\":\"nope\"}                          | no_such_controller | nope",
                "trace_get_events      | {\"max\":0}                                        | invalid_params     | max",
                "trace_get_events      | {\"max\":65537}                                    | invalid_params     | max",
            })
    void shouldAnswerNamedErrorWhenInputIsBad(String method, String params, String error, String messagePart) {
        assertError(error, method, params, messagePart);
    }
}
