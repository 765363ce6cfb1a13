package io.vhostd.master.stats;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.BooleanNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.vhostd.master.rpc.RpcServer;
import io.vhostd.rpc.RpcErrorCode;
import io.vhostd.rpc.RpcException;
import io.vhostd.shm.arena.HugepageArena;
import io.vhostd.shm.stats.HistogramAccumulator;
import io.vhostd.shm.stats.IoCounters;
import io.vhostd.shm.stats.LatencyBuckets;
import io.vhostd.shm.stats.StatsDescriptor;
import io.vhostd.shm.stats.StatsReader;
import io.vhostd.shm.stats.TraceEvent;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.LongSupplier;
import java.util.function.Supplier;

/**
 * The master's reading side of the per-controller stats regions (virtnvme-shm/spec/stats.md) and its RPC methods
 * (issue #5): {@code bdev_get_iostat}, {@code bdev_reset_iostat}, {@code bdev_enable_histogram}, {@code
 * bdev_get_histogram}, {@code trace_start}, {@code trace_stop}, {@code trace_get_events}.
 *
 * <p>It creates one region per controller (a memfd, {@link #createRegion}) and keeps it for the controller's lifetime,
 * across slave restarts and handovers, so the counters continue; {@code bdev_reset_iostat} only moves a reader-side
 * baseline. A removed controller's final counters stay in its bdev's totals. Thread-safe (RPC worker threads and the
 * Prometheus scraper call concurrently): every method synchronizes on this service.
 */
public final class StatsService {
    /** Trace records per queue of every region. */
    public static final int TRACE_CAPACITY = 8192;

    /** {@code trace_get_events}: the default and largest {@code max}. */
    public static final int DEFAULT_MAX_EVENTS = 1000;

    public static final int MAX_EVENTS = 65536;

    /** Ticks are nanoseconds. */
    public static final long TICK_RATE = 1_000_000_000L;

    private static final ObjectMapper JSON = new ObjectMapper();

    /** One controller's region and the reader-side state kept for it. */
    private static final class Controller {
        final String name;
        final String bdev;
        final HugepageArena arena;
        final StatsReader reader;
        /** {@code bdev_reset_iostat} baseline per queue. */
        final IoCounters[] baseline;
        /** Trace: the last sequence handed out by {@code trace_get_events}, per queue. */
        final long[] traceCursor;
        /** {@code bdev_enable_histogram} baseline per segment × op (null: none, the histogram counts from zero). */
        HistogramAccumulator[] histogramBaseline;

        Controller(String name, String bdev, HugepageArena arena) {
            this.name = name;
            this.bdev = bdev;
            this.arena = arena;
            this.reader = new StatsReader(arena.segment());
            this.baseline = new IoCounters[reader.numQueues()];
            Arrays.fill(baseline, IoCounters.ZERO);
            this.traceCursor = new long[reader.numQueues()];
        }
    }

    /** A bdev's counters of removed controllers, and its reset baseline of them. */
    private static final class Retired {
        IoCounters total = IoCounters.ZERO;
        IoCounters baseline = IoCounters.ZERO;
    }

    private final Supplier<List<String>> bdevNames;
    private final LongSupplier clockNs;
    private final Map<String, Controller> controllers = new LinkedHashMap<>();
    private final Map<String, Retired> retired = new LinkedHashMap<>();
    /** Bdevs whose histograms are enabled (a controller created later for them starts enabled). */
    private final Set<String> histogramBdevs = new LinkedHashSet<>();
    /** Trace drops not reported yet (overwritten before {@code trace_get_events} read them). */
    private long droppedEvents;
    /** When every bdev's counters started: the service's creation, or the last {@code bdev_reset_iostat} of all. */
    private long startNs;
    /** When a bdev's counters started, where a {@code bdev_reset_iostat {name}} moved it past {@link #startNs}. */
    private final Map<String, Long> bdevStartNs = new LinkedHashMap<>();

    /**
     * @param bdevNames the bdevs that exist now (for {@code bdev_get_iostat} without a name and for no_such_bdev)
     * @param clockNs CLOCK_MONOTONIC in ns ({@code System::nanoTime}; the slave's clock)
     */
    public StatsService(Supplier<List<String>> bdevNames, LongSupplier clockNs) {
        this.bdevNames = bdevNames;
        this.clockNs = clockNs;
        this.startNs = clockNs.getAsLong();
    }

    /** With {@link System#nanoTime()}. */
    public StatsService(Supplier<List<String>> bdevNames) {
        this(bdevNames, System::nanoTime);
    }

    // ---------------------------------------------------------------- regions (Master)

    /**
     * Creates and formats the stats region of a new controller (a memfd the master keeps; sent to every slave that
     * serves the controller as {@code controller_stats}).
     *
     * @throws IllegalStateException if the controller already has one
     */
    public synchronized HugepageArena createRegion(String controller, String bdev, int numQueues) {
        if (controllers.containsKey(controller)) {
            throw new IllegalStateException("controller " + controller + " already has a stats region");
        }
        HugepageArena arena = HugepageArena.create(
                "vhostd-stats-" + controller, StatsDescriptor.lengthBytes(numQueues, TRACE_CAPACITY), false);
        try {
            StatsDescriptor.format(arena.segment(), numQueues, TRACE_CAPACITY);
            serve(new Controller(controller, bdev, arena));
            return arena;
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    /** Starts serving {@code c}'s statistics, with histograms on when its bdev has them on. */
    private void serve(Controller c) {
        if (histogramBdevs.contains(c.bdev)) {
            c.reader.flag(StatsDescriptor.HISTOGRAM_ENABLED_MASK, true);
        }
        controllers.put(c.name, c);
    }

    /**
     * Issue #4 master restart: takes back the region of {@code controller} that a re-adopted slave kept writing (its
     * memfd came over the control channel); the counters continue where they were. Takes ownership of {@code fd}
     * (closed if this throws).
     *
     * @throws IllegalArgumentException if the region is not a stats region of {@code numQueues} queues, or too short
     *     (peer input)
     * @throws IllegalStateException if {@code controller} already has a region
     */
    public synchronized HugepageArena adoptRegion(String controller, String bdev, int numQueues, int fd) {
        if (controllers.containsKey(controller)) {
            io.vhostd.shm.linux.Unistd.close(fd);
            throw new IllegalStateException("controller " + controller + " already has a stats region");
        }
        HugepageArena arena;
        try {
            // attach checks (fstat) that the memfd is at least this long
            arena = HugepageArena.attach(fd, StatsDescriptor.lengthBytes(numQueues, TRACE_CAPACITY));
        } catch (RuntimeException e) {
            io.vhostd.shm.linux.Unistd.close(fd);
            throw e;
        }
        try {
            Controller c = new Controller(controller, bdev, arena);
            if (c.reader.numQueues() != numQueues) {
                throw new IllegalArgumentException("stats region of " + controller + " has " + c.reader.numQueues()
                        + " queues, expected " + numQueues);
            }
            serve(c);
            return arena;
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    /** The region of {@code controller} (to send it to a slave), or null. */
    public synchronized HugepageArena region(String controller) {
        Controller c = controllers.get(controller);
        return c == null ? null : c.arena;
    }

    /**
     * The controller is gone (its slave no longer writes the region): its counters stay in its bdev's totals, the
     * region is unmapped. Unknown names are ignored.
     */
    public synchronized void removeController(String controller) {
        Controller c = controllers.remove(controller);
        if (c == null) {
            return;
        }
        long now = clockNs.getAsLong();
        Retired r = retired.computeIfAbsent(c.bdev, b -> new Retired());
        for (int q = 0; q < c.reader.numQueues(); q++) {
            IoCounters current = c.reader.counters(q, now);
            r.total = r.total.plus(depthless(current));
            r.baseline = r.baseline.plus(depthless(c.baseline[q]));
        }
        c.arena.close();
    }

    /** Unmaps every region. */
    public synchronized void close() {
        controllers.values().forEach(c -> c.arena.close());
        controllers.clear();
    }

    // ---------------------------------------------------------------- API for HEALTH / Prometheus

    /**
     * Counters of every bdev that has (or had) a controller, summed over its controllers and queues, since start (NOT
     * affected by bdev_reset_iostat: Prometheus counters must be monotonic).
     */
    public synchronized Map<String, IoCounters> bdevTotals() {
        long now = clockNs.getAsLong();
        Map<String, IoCounters> out = new LinkedHashMap<>();
        retired.forEach((bdev, r) -> out.put(bdev, r.total));
        for (Controller c : controllers.values()) {
            IoCounters sum = out.getOrDefault(c.bdev, IoCounters.ZERO);
            for (int q = 0; q < c.reader.numQueues(); q++) {
                sum = sum.plus(c.reader.counters(q, now));
            }
            out.put(c.bdev, sum);
        }
        return out;
    }

    /** Histogram snapshots of a bdev (empty when disabled or unknown): segment × op, only non-empty ones. */
    public synchronized List<HistogramSnapshot> histograms(String bdev) {
        List<HistogramSnapshot> out = new ArrayList<>();
        if (!histogramBdevs.contains(bdev)) {
            return out;
        }
        for (int s = 0; s < StatsDescriptor.SEGMENT_COUNT; s++) {
            for (int op = 0; op < StatsDescriptor.OP_COUNT; op++) {
                HistogramAccumulator h = merged(bdev, s, op);
                if (h.count() == 0) {
                    continue;
                }
                int n = 0;
                for (int i = 0; i < LatencyBuckets.BUCKET_COUNT; i++) {
                    n += h.bucketCount(i) > 0 ? 1 : 0;
                }
                long[] high = new long[n];
                long[] counts = new long[n];
                int j = 0;
                for (int i = 0; i < LatencyBuckets.BUCKET_COUNT; i++) {
                    if (h.bucketCount(i) > 0) {
                        high[j] = LatencyBuckets.bucketHighNs(i);
                        counts[j++] = h.bucketCount(i);
                    }
                }
                out.add(new HistogramSnapshot(
                        StatsDescriptor.SEGMENT_NAMES.get(s),
                        StatsDescriptor.OP_NAMES.get(op),
                        h.count(),
                        h.sumNs(),
                        high,
                        counts));
            }
        }
        return out;
    }

    // ---------------------------------------------------------------- RPC

    /** Registers the methods of this service (each described in rpc-spec/openrpc.json). */
    public void register(RpcServer rpc) {
        rpc.register("bdev_get_iostat", this::bdevGetIostat);
        rpc.register("bdev_reset_iostat", this::bdevResetIostat);
        rpc.register("bdev_enable_histogram", this::bdevEnableHistogram);
        rpc.register("bdev_get_histogram", this::bdevGetHistogram);
        rpc.register("trace_start", params -> traceSwitch(params, true));
        rpc.register("trace_stop", params -> traceSwitch(params, false));
        rpc.register("trace_get_events", this::traceGetEvents);
    }

    /** {@code bdev_get_iostat {name?, per_controller?, per_queue?}}. */
    synchronized JsonNode bdevGetIostat(JsonNode params) throws RpcException {
        String name = optionalText(params, "name");
        boolean perQueue = params.path("per_queue").asBoolean(false);
        boolean perController = perQueue || params.path("per_controller").asBoolean(false);
        List<String> names = name == null ? allBdevs() : List.of(checkBdev(name));
        long now = clockNs.getAsLong();
        ObjectNode out = JSON.createObjectNode();
        out.put("tick_rate", TICK_RATE);
        out.put("ticks", now);
        ArrayNode bdevs = out.putArray("bdevs");
        for (String bdev : names) {
            ObjectNode b = bdevs.addObject();
            b.put("name", bdev);
            b.put("start_ticks", bdevStartNs.getOrDefault(bdev, startNs));
            Retired r = retired.get(bdev);
            IoCounters sum = r == null ? IoCounters.ZERO : r.total.minus(r.baseline);
            ArrayNode ctrls = perController ? JSON.createArrayNode() : null;
            for (Controller c : controllers.values()) {
                if (!c.bdev.equals(bdev)) {
                    continue;
                }
                IoCounters csum = IoCounters.ZERO;
                ArrayNode queues = perQueue ? JSON.createArrayNode() : null;
                for (int q = 0; q < c.reader.numQueues(); q++) {
                    IoCounters qc = c.reader.counters(q, now).minus(c.baseline[q]);
                    csum = csum.plus(qc);
                    if (queues != null) {
                        ObjectNode qn = queues.addObject();
                        qn.put("index", q);
                        putCounters(qn, qc);
                    }
                }
                sum = sum.plus(csum);
                if (ctrls != null) {
                    ObjectNode cn = ctrls.addObject();
                    cn.put("name", c.name);
                    putCounters(cn, csum);
                    if (queues != null) {
                        cn.set("queues", queues);
                    }
                }
            }
            putCounters(b, sum);
            if (ctrls != null) {
                b.set("controllers", ctrls);
            }
        }
        return out;
    }

    /** {@code bdev_reset_iostat {name?}}: moves the reader-side baseline to now. */
    synchronized JsonNode bdevResetIostat(JsonNode params) throws RpcException {
        String name = optionalText(params, "name");
        if (name != null) {
            checkBdev(name);
        }
        long now = clockNs.getAsLong();
        if (name == null) {
            startNs = now;
            bdevStartNs.clear();
        } else {
            bdevStartNs.put(name, now);
        }
        for (Controller c : controllers.values()) {
            if (name == null || c.bdev.equals(name)) {
                for (int q = 0; q < c.reader.numQueues(); q++) {
                    c.baseline[q] = c.reader.counters(q, now);
                }
            }
        }
        retired.forEach((bdev, r) -> {
            if (name == null || bdev.equals(name)) {
                r.baseline = r.total;
            }
        });
        return BooleanNode.TRUE;
    }

    /** {@code bdev_enable_histogram {name, enable}}: enabling starts every histogram of the bdev from zero. */
    synchronized JsonNode bdevEnableHistogram(JsonNode params) throws RpcException {
        String name = checkBdev(requiredText(params, "name"));
        JsonNode enable = params.get("enable");
        if (enable == null || !enable.isBoolean()) {
            throw new RpcException(RpcErrorCode.INVALID_PARAMS, "invalid params: enable: must be a boolean");
        }
        boolean on = enable.booleanValue();
        boolean wasOn = !on ? histogramBdevs.remove(name) : !histogramBdevs.add(name);
        for (Controller c : controllers.values()) {
            if (!c.bdev.equals(name)) {
                continue;
            }
            if (on && !wasOn) {
                c.histogramBaseline = snapshot(c);
            }
            c.reader.flag(StatsDescriptor.HISTOGRAM_ENABLED_MASK, on);
        }
        return BooleanNode.TRUE;
    }

    /** {@code bdev_get_histogram {name, segment?, op?}}. */
    synchronized JsonNode bdevGetHistogram(JsonNode params) throws RpcException {
        String name = checkBdev(requiredText(params, "name"));
        int segment = optionalIndex(params, "segment", StatsDescriptor.SEGMENT_NAMES);
        int op = optionalIndex(params, "op", StatsDescriptor.OP_NAMES);
        ObjectNode out = JSON.createObjectNode();
        out.put("name", name);
        out.put("tick_rate", TICK_RATE);
        boolean enabled = histogramBdevs.contains(name);
        out.put("enabled", enabled);
        ArrayNode list = out.putArray("histograms");
        if (!enabled) {
            return out;
        }
        for (int s = 0; s < StatsDescriptor.SEGMENT_COUNT; s++) {
            if (segment >= 0 && s != segment) {
                continue;
            }
            for (int o = 0; o < StatsDescriptor.OP_COUNT; o++) {
                if (op >= 0 && o != op) {
                    continue;
                }
                HistogramAccumulator h = merged(name, s, o);
                if (h.count() == 0) {
                    continue;
                }
                ObjectNode hn = list.addObject();
                hn.put("segment", StatsDescriptor.SEGMENT_NAMES.get(s));
                hn.put("op", StatsDescriptor.OP_NAMES.get(o));
                hn.put("count", h.count());
                hn.put("sum_ticks", h.sumNs());
                hn.put("min_ticks", h.minNs());
                hn.put("max_ticks", h.maxNs());
                ObjectNode p = hn.putObject("percentiles");
                p.put("p50", h.percentileNs(0.50));
                p.put("p90", h.percentileNs(0.90));
                p.put("p99", h.percentileNs(0.99));
                p.put("p999", h.percentileNs(0.999));
                ArrayNode buckets = hn.putArray("buckets");
                for (int i = 0; i < LatencyBuckets.BUCKET_COUNT; i++) {
                    if (h.bucketCount(i) > 0) {
                        ObjectNode bn = buckets.addObject();
                        bn.put("low_ticks", LatencyBuckets.bucketLowNs(i));
                        bn.put("high_ticks", LatencyBuckets.bucketHighNs(i));
                        bn.put("count", h.bucketCount(i));
                    }
                }
            }
        }
        return out;
    }

    /** {@code trace_start} / {@code trace_stop {controller?}}: starting skips what the ring held before. */
    synchronized JsonNode traceSwitch(JsonNode params, boolean on) throws RpcException {
        for (Controller c : selectControllers(params)) {
            if (on && (c.reader.flags() & StatsDescriptor.TRACE_ENABLED_MASK) == 0) {
                for (int q = 0; q < c.reader.numQueues(); q++) {
                    c.traceCursor[q] = c.reader.traceLastSeq(q);
                }
            }
            c.reader.flag(StatsDescriptor.TRACE_ENABLED_MASK, on);
        }
        return BooleanNode.TRUE;
    }

    /** One event read back, with the controller it came from. */
    private record Event(Controller controller, TraceEvent event) {}

    /**
     * {@code trace_get_events {controller?, max?}}: the oldest unread events (by used-ring publish time; within a
     * queue that is sequence order), at most {@code max}; {@code dropped} counts events overwritten before they were
     * read (since the previous call).
     */
    synchronized JsonNode traceGetEvents(JsonNode params) throws RpcException {
        List<Controller> selected = selectControllers(params);
        int max = DEFAULT_MAX_EVENTS;
        JsonNode maxNode = params.get("max");
        if (maxNode != null) {
            if (!maxNode.canConvertToInt() || maxNode.intValue() < 1 || maxNode.intValue() > MAX_EVENTS) {
                throw new RpcException(
                        RpcErrorCode.INVALID_PARAMS,
                        "invalid params: max: must be an integer in [1, " + MAX_EVENTS + "]");
            }
            max = maxNode.intValue();
        }
        List<Event> events = new ArrayList<>();
        for (Controller c : selected) {
            int capacity = c.reader.traceCapacity();
            for (int q = 0; q < c.reader.numQueues(); q++) {
                long last = c.reader.traceLastSeq(q);
                long from = Math.max(c.traceCursor[q] + 1, last - capacity + 1);
                droppedEvents += Math.max(0, from - (c.traceCursor[q] + 1));
                for (long seq = from; seq <= last; seq++) {
                    TraceEvent e = c.reader.traceEvent(q, seq);
                    if (e == null) {
                        droppedEvents++; // overwritten while we read
                        c.traceCursor[q] = seq;
                    } else {
                        events.add(new Event(c, e));
                    }
                }
                if (last < c.traceCursor[q]) {
                    // the ring restarted below our cursor (cannot happen while the master owns the region)
                    c.traceCursor[q] = last;
                }
            }
        }
        events.sort(Comparator.comparingLong((Event e) -> e.event().usedNs())
                .thenComparing(e -> e.controller().name)
                .thenComparingInt(e -> e.event().queue())
                .thenComparingLong(e -> e.event().seq()));
        ObjectNode out = JSON.createObjectNode();
        ArrayNode list = out.putArray("events");
        for (int i = 0; i < events.size() && i < max; i++) {
            Event ev = events.get(i);
            TraceEvent e = ev.event();
            Controller c = ev.controller();
            c.traceCursor[e.queue()] = Math.max(c.traceCursor[e.queue()], e.seq());
            ObjectNode n = list.addObject();
            n.put("seq", e.seq());
            n.put("controller", c.name);
            n.put("queue", e.queue());
            n.put("op", e.op() < StatsDescriptor.OP_COUNT ? StatsDescriptor.OP_NAMES.get(e.op()) : "other");
            n.put("offset_bytes", e.offsetBytes());
            n.put("length_bytes", Integer.toUnsignedLong(e.lengthBytes()));
            n.put("status", statusName(e.status()));
            n.put("fetch_ns", e.fetchNs());
            n.put("submit_ns", e.submitNs());
            n.put("device_submit_ns", e.deviceSubmitNs());
            n.put("device_complete_ns", e.deviceCompleteNs());
            n.put("used_ns", e.usedNs());
            n.put("notify_ns", e.notifyNs());
        }
        out.put("dropped", droppedEvents);
        droppedEvents = 0;
        return out;
    }

    // ---------------------------------------------------------------- helpers

    /** virtio 1.2 §5.2.6: VIRTIO_BLK_S_OK 0, VIRTIO_BLK_S_IOERR 1, VIRTIO_BLK_S_UNSUPP 2. */
    static String statusName(int status) {
        return switch (status) {
            case 0 -> "ok";
            case 1 -> "ioerr";
            case 2 -> "unsupp";
            default -> "status_" + status;
        };
    }

    private HistogramAccumulator merged(String bdev, int segment, int op) {
        HistogramAccumulator h = new HistogramAccumulator();
        for (Controller c : controllers.values()) {
            if (!c.bdev.equals(bdev)) {
                continue;
            }
            HistogramAccumulator ch = new HistogramAccumulator();
            for (int q = 0; q < c.reader.numQueues(); q++) {
                c.reader.addHistogram(q, segment, op, ch);
            }
            if (c.histogramBaseline != null) {
                ch.subtract(c.histogramBaseline[segment * StatsDescriptor.OP_COUNT + op]);
            }
            h.add(ch);
        }
        return h;
    }

    private static HistogramAccumulator[] snapshot(Controller c) {
        HistogramAccumulator[] out = new HistogramAccumulator[StatsDescriptor.SEGMENT_COUNT * StatsDescriptor.OP_COUNT];
        for (int s = 0; s < StatsDescriptor.SEGMENT_COUNT; s++) {
            for (int op = 0; op < StatsDescriptor.OP_COUNT; op++) {
                HistogramAccumulator h = new HistogramAccumulator();
                for (int q = 0; q < c.reader.numQueues(); q++) {
                    c.reader.addHistogram(q, s, op, h);
                }
                out[s * StatsDescriptor.OP_COUNT + op] = h;
            }
        }
        return out;
    }

    private static IoCounters depthless(IoCounters c) {
        return c.withQueueDepth(0);
    }

    /** The bdevs that exist now (a deleted bdev's counters stay only in {@link #bdevTotals}). */
    private List<String> allBdevs() {
        LinkedHashSet<String> names = new LinkedHashSet<>(bdevNames.get());
        controllers.values().forEach(c -> names.add(c.bdev));
        return List.copyOf(names);
    }

    private String checkBdev(String name) throws RpcException {
        if (!allBdevs().contains(name)) {
            throw new RpcException(RpcErrorCode.NO_SUCH_BDEV, "no bdev named '" + name + "'");
        }
        return name;
    }

    private List<Controller> selectControllers(JsonNode params) throws RpcException {
        String name = optionalText(params, "controller");
        if (name == null) {
            return List.copyOf(controllers.values());
        }
        Controller c = controllers.get(name);
        if (c == null) {
            throw new RpcException(RpcErrorCode.NO_SUCH_CONTROLLER, "no controller named '" + name + "'");
        }
        return List.of(c);
    }

    private static String optionalText(JsonNode params, String field) throws RpcException {
        JsonNode n = params.get(field);
        if (n == null || n.isNull()) {
            return null;
        }
        if (!n.isTextual()) {
            throw new RpcException(RpcErrorCode.INVALID_PARAMS, "invalid params: " + field + ": must be a string");
        }
        return n.asText();
    }

    private static String requiredText(JsonNode params, String field) throws RpcException {
        String s = optionalText(params, field);
        if (s == null) {
            throw new RpcException(RpcErrorCode.INVALID_PARAMS, "invalid params: " + field + ": required");
        }
        return s;
    }

    /** The index of the optional name {@code field} in {@code names}, -1 when absent. */
    private static int optionalIndex(JsonNode params, String field, List<String> names) throws RpcException {
        String s = optionalText(params, field);
        if (s == null) {
            return -1;
        }
        int i = names.indexOf(s);
        if (i < 0) {
            throw new RpcException(
                    RpcErrorCode.INVALID_PARAMS,
                    "invalid params: " + field + ": '" + s + "' is not one of " + String.join(", ", names));
        }
        return i;
    }

    private static void putCounters(ObjectNode o, IoCounters c) {
        o.put("num_read_ops", c.numReadOps());
        o.put("bytes_read", c.bytesRead());
        o.put("num_write_ops", c.numWriteOps());
        o.put("bytes_written", c.bytesWritten());
        o.put("num_flush_ops", c.numFlushOps());
        o.put("num_unmap_ops", c.numUnmapOps());
        o.put("bytes_unmapped", c.bytesUnmapped());
        o.put("num_write_zeroes_ops", c.numWriteZeroesOps());
        o.put("bytes_write_zeroes", c.bytesWriteZeroes());
        o.put("read_latency_ticks", c.readLatencyTicks());
        o.put("write_latency_ticks", c.writeLatencyTicks());
        o.put("flush_latency_ticks", c.flushLatencyTicks());
        o.put("unmap_latency_ticks", c.unmapLatencyTicks());
        o.put("write_zeroes_latency_ticks", c.writeZeroesLatencyTicks());
        o.put("io_errors", c.ioErrors());
        o.put("queue_depth", c.queueDepth());
        o.put("io_time_ticks", c.ioTimeTicks());
        o.put("weighted_io_time_ticks", c.weightedIoTimeTicks());
    }
}
