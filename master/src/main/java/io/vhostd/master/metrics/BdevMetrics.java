package io.vhostd.master.metrics;

import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.prometheus.metrics.model.registry.MultiCollector;
import io.prometheus.metrics.model.snapshots.ClassicHistogramBuckets;
import io.prometheus.metrics.model.snapshots.HistogramSnapshot;
import io.prometheus.metrics.model.snapshots.Labels;
import io.prometheus.metrics.model.snapshots.MetricMetadata;
import io.prometheus.metrics.model.snapshots.MetricSnapshots;
import io.vhostd.shm.stats.IoCounters;
import io.vhostd.shm.stats.LatencyBuckets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.ToLongFunction;

/**
 * The per-bdev metrics: Micrometer {@link FunctionCounter}s and a queue-depth {@link Gauge} over one snapshot of
 * {@link StatsSource#bdevTotals()} taken by {@link #refresh()} before each scrape, and the latency histograms as a
 * Prometheus {@link MultiCollector} (Micrometer cannot take buckets counted elsewhere).
 *
 * <p>Histogram buckets: the data path counts latencies in fine log-linear buckets ({@link LatencyBuckets}, 16 per
 * power of two). Prometheus gets a fixed, stable set of {@code le} bounds near 1, 2 and 5 × 10^k ns from 1 µs to 10 s,
 * each moved up to the inclusive upper edge of the fine bucket that holds it ({@link #LE_NS}), so every fine bucket lies
 * entirely under one {@code le}: the cumulative counts are exact, not interpolated. A fine bucket above 10 s counts in
 * {@code +Inf} only.
 */
final class BdevMetrics implements MultiCollector {
    /** Name of the histogram family (Prometheus adds {@code _bucket}, {@code _count}, {@code _sum}). */
    static final String LATENCY_HISTOGRAM = "vhostd_bdev_latency_seconds";

    /** The {@code le} bounds in ns (see the class Javadoc), ascending. */
    static final long[] LE_NS = leBounds();

    private static final double NANOS_PER_SECOND = 1e9;

    /** One counter: Micrometer name (Prometheus: dots to underscores, plus {@code _total}), help, value, scale. */
    private record CounterDef(String name, String help, ToLongFunction<IoCounters> value, double scale) {}

    private static final List<CounterDef> COUNTERS = List.of(
            new CounterDef("vhostd.bdev.read.ops", "Completed read requests", IoCounters::numReadOps, 1),
            new CounterDef("vhostd.bdev.read.bytes", "Bytes read", IoCounters::bytesRead, 1),
            new CounterDef("vhostd.bdev.write.ops", "Completed write requests", IoCounters::numWriteOps, 1),
            new CounterDef("vhostd.bdev.write.bytes", "Bytes written", IoCounters::bytesWritten, 1),
            new CounterDef("vhostd.bdev.flush.ops", "Completed flush requests", IoCounters::numFlushOps, 1),
            new CounterDef("vhostd.bdev.unmap.ops", "Completed discard requests", IoCounters::numUnmapOps, 1),
            new CounterDef("vhostd.bdev.unmap.bytes", "Bytes discarded", IoCounters::bytesUnmapped, 1),
            new CounterDef(
                    "vhostd.bdev.write.zeroes.ops",
                    "Completed write-zeroes requests",
                    IoCounters::numWriteZeroesOps,
                    1),
            new CounterDef("vhostd.bdev.write.zeroes.bytes", "Bytes zeroed", IoCounters::bytesWriteZeroes, 1),
            new CounterDef(
                    "vhostd.bdev.read.latency.seconds",
                    "Sum of read latencies (guest ring fetch to used-ring publish)",
                    IoCounters::readLatencyTicks,
                    1 / NANOS_PER_SECOND),
            new CounterDef(
                    "vhostd.bdev.write.latency.seconds",
                    "Sum of write latencies",
                    IoCounters::writeLatencyTicks,
                    1 / NANOS_PER_SECOND),
            new CounterDef(
                    "vhostd.bdev.flush.latency.seconds",
                    "Sum of flush latencies",
                    IoCounters::flushLatencyTicks,
                    1 / NANOS_PER_SECOND),
            new CounterDef(
                    "vhostd.bdev.unmap.latency.seconds",
                    "Sum of discard latencies",
                    IoCounters::unmapLatencyTicks,
                    1 / NANOS_PER_SECOND),
            new CounterDef(
                    "vhostd.bdev.write.zeroes.latency.seconds",
                    "Sum of write-zeroes latencies",
                    IoCounters::writeZeroesLatencyTicks,
                    1 / NANOS_PER_SECOND),
            new CounterDef("vhostd.bdev.io.errors", "Requests completed with an error status", IoCounters::ioErrors, 1),
            new CounterDef(
                    "vhostd.bdev.io.time.seconds",
                    "Time with at least one request outstanding (diskstats field 10)",
                    IoCounters::ioTimeTicks,
                    1 / NANOS_PER_SECOND),
            new CounterDef(
                    "vhostd.bdev.weighted.io.time.seconds",
                    "Integral of the queue depth over time (diskstats field 11)",
                    IoCounters::weightedIoTimeTicks,
                    1 / NANOS_PER_SECOND));

    private final MeterRegistry registry;
    private final StatsSource source;
    /** Meters by bdev; guarded by this. */
    private final Map<String, List<Meter>> meters = new HashMap<>();
    /** The totals of the last {@link #refresh()}; the meters read it. */
    private volatile Map<String, IoCounters> snapshot = Map.of();

    BdevMetrics(MeterRegistry registry, StatsSource source) {
        this.registry = registry;
        this.source = source;
    }

    /** Takes a new snapshot of the totals, registers the meters of new bdevs and removes those of vanished ones. */
    synchronized void refresh() {
        Map<String, IoCounters> totals = Map.copyOf(source.bdevTotals());
        snapshot = totals;
        for (String bdev : totals.keySet()) {
            meters.computeIfAbsent(bdev, this::register);
        }
        meters.entrySet().removeIf(e -> {
            if (totals.containsKey(e.getKey())) {
                return false;
            }
            e.getValue().forEach(registry::remove);
            return true;
        });
    }

    private List<Meter> register(String bdev) {
        List<Meter> list = new ArrayList<>();
        for (CounterDef def : COUNTERS) {
            list.add(FunctionCounter.builder(def.name(), this, m -> m.value(bdev, def.value()) * def.scale())
                    .description(def.help())
                    .tag("bdev", bdev)
                    .register(registry));
        }
        list.add(Gauge.builder("vhostd.bdev.queue.depth", this, m -> m.value(bdev, IoCounters::queueDepth))
                .description("Requests fetched from the guest and not yet completed (now)")
                .tag("bdev", bdev)
                .register(registry));
        return list;
    }

    private double value(String bdev, ToLongFunction<IoCounters> f) {
        IoCounters c = snapshot.get(bdev);
        return c == null ? Double.NaN : f.applyAsLong(c);
    }

    @Override
    public MetricSnapshots collect() {
        HistogramSnapshot.Builder family = HistogramSnapshot.builder()
                .name(LATENCY_HISTOGRAM)
                .help("Request latency per bdev, segment of the request's life and op (docs/observability.md)");
        int points = 0;
        // sorted: a stable order of series from scrape to scrape
        for (String bdev : new TreeMap<>(snapshot).keySet()) {
            for (io.vhostd.master.stats.HistogramSnapshot h : source.histograms(bdev)) {
                if (h.count() == 0) {
                    continue;
                }
                family.dataPoint(HistogramSnapshot.HistogramDataPointSnapshot.builder()
                        .labels(Labels.of("bdev", bdev, "op", h.op(), "segment", h.segment()))
                        .classicHistogramBuckets(buckets(h.bucketHighTicks(), h.bucketCounts()))
                        .sum(h.sumTicks() / NANOS_PER_SECOND)
                        .build());
                points++;
            }
        }
        return points == 0 ? MetricSnapshots.of() : MetricSnapshots.of(family.build());
    }

    @Override
    public List<String> getPrometheusNames() {
        return List.of(LATENCY_HISTOGRAM);
    }

    @Override
    public MetricMetadata getMetadata(String prometheusName) {
        return new MetricMetadata(LATENCY_HISTOGRAM);
    }

    /**
     * Fine buckets (inclusive upper bounds in ns, counts not cumulative) regrouped under {@link #LE_NS} and
     * {@code +Inf}; the result's counts are not cumulative either (the exposition writer sums them).
     */
    static ClassicHistogramBuckets buckets(long[] highNs, long[] counts) {
        if (highNs.length != counts.length) {
            throw new IllegalArgumentException(
                    "histogram with " + highNs.length + " bounds and " + counts.length + " counts");
        }
        long[] grouped = new long[LE_NS.length + 1];
        for (int i = 0; i < highNs.length; i++) {
            int at = 0;
            while (at < LE_NS.length && LE_NS[at] < highNs[i]) {
                at++;
            }
            grouped[at] += counts[i];
        }
        double[] le = new double[LE_NS.length + 1];
        for (int i = 0; i < LE_NS.length; i++) {
            le[i] = LE_NS[i] / NANOS_PER_SECOND;
        }
        le[LE_NS.length] = Double.POSITIVE_INFINITY;
        return ClassicHistogramBuckets.of(le, grouped);
    }

    private static long[] leBounds() {
        List<Long> bounds = new ArrayList<>();
        for (long decade = 1_000; decade <= 1_000_000_000L; decade *= 10) {
            for (long m : new long[] {1, 2, 5}) {
                bounds.add(LatencyBuckets.bucketHighNs(LatencyBuckets.bucketIndex(m * decade)));
            }
        }
        bounds.add(LatencyBuckets.bucketHighNs(LatencyBuckets.bucketIndex(10_000_000_000L)));
        return bounds.stream().mapToLong(Long::longValue).toArray();
    }
}
