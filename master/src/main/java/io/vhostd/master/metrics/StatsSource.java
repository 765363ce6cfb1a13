package io.vhostd.master.metrics;

import io.vhostd.master.stats.HistogramSnapshot;
import io.vhostd.shm.stats.IoCounters;
import java.util.List;
import java.util.Map;

/**
 * What the metrics read: {@code StatsService}'s per-bdev totals and histograms (the master passes {@code
 * stats::bdevTotals} and {@code stats::histograms}; tests pass fakes).
 */
public interface StatsSource {
    /** Counters of every bdev that has (or had) a controller, since the master started; monotonic except depth. */
    Map<String, IoCounters> bdevTotals();

    /** Histogram snapshots of a bdev (segment × op), empty when disabled or unknown. */
    List<HistogramSnapshot> histograms(String bdev);

    /** A source with no bdevs. */
    static StatsSource empty() {
        return new StatsSource() {
            @Override
            public Map<String, IoCounters> bdevTotals() {
                return Map.of();
            }

            @Override
            public List<HistogramSnapshot> histograms(String bdev) {
                return List.of();
            }
        };
    }
}
