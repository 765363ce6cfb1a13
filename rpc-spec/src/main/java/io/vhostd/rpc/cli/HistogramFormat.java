package io.vhostd.rpc.cli;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.Locale;

/**
 * {@code vhostctl histogram BDEV} as text: for each (segment, op) histogram of a {@code bdev_get_histogram} result a
 * summary line, a percentile line and one bar per non-empty bucket, bars scaled so the fullest bucket is {@value
 * #BAR_WIDTH} characters. Times are in microseconds (ticks / tick_rate).
 *
 * <pre>
 * bdev disk0  segment device  op read: 1200 requests, mean 85.3 us, min 40.1 us, max 910.0 us
 *   p50 81.9 us  p90 102.4 us  p99 204.8 us  p99.9 819.2 us
 *       40.0 -     48.0 us |##                                                |     30
 * </pre>
 */
public final class HistogramFormat {
    private HistogramFormat() {}

    /** Characters of the longest bar. */
    public static final int BAR_WIDTH = 50;

    /** The text, each line ending in a newline. */
    public static String format(JsonNode result) {
        String name = result.path("name").asText();
        double ticksPerUs = result.path("tick_rate").asLong(1_000_000_000L) / 1_000_000.0;
        StringBuilder out = new StringBuilder();
        if (!result.path("enabled").asBoolean(false)) {
            return out.append("bdev ")
                    .append(name)
                    .append(": histograms disabled (vhostctl rpc bdev_enable_histogram '{\"name\":\"")
                    .append(name)
                    .append("\",\"enable\":true}')\n")
                    .toString();
        }
        if (result.path("histograms").isEmpty()) {
            return out.append("bdev ")
                    .append(name)
                    .append(": no requests recorded\n")
                    .toString();
        }
        for (JsonNode h : result.path("histograms")) {
            long count = h.path("count").asLong();
            out.append(String.format(
                    Locale.ROOT,
                    "bdev %s  segment %s  op %s: %d requests, mean %s, min %s, max %s%n",
                    name,
                    h.path("segment").asText(),
                    h.path("op").asText(),
                    count,
                    us(count == 0 ? 0 : h.path("sum_ticks").asDouble() / count, ticksPerUs),
                    us(h.path("min_ticks").asDouble(), ticksPerUs),
                    us(h.path("max_ticks").asDouble(), ticksPerUs)));
            JsonNode p = h.path("percentiles");
            out.append(String.format(
                    Locale.ROOT,
                    "  p50 %s  p90 %s  p99 %s  p99.9 %s%n",
                    us(p.path("p50").asDouble(), ticksPerUs),
                    us(p.path("p90").asDouble(), ticksPerUs),
                    us(p.path("p99").asDouble(), ticksPerUs),
                    us(p.path("p999").asDouble(), ticksPerUs)));
            long most = 0;
            for (JsonNode b : h.path("buckets")) {
                most = Math.max(most, b.path("count").asLong());
            }
            for (JsonNode b : h.path("buckets")) {
                long n = b.path("count").asLong();
                // a non-empty bucket always shows at least one mark
                int bar = most == 0 ? 0 : (int) Math.max(n > 0 ? 1 : 0, Math.round((double) n * BAR_WIDTH / most));
                out.append(String.format(
                        Locale.ROOT,
                        "  %10.1f - %10.1f us |%-" + BAR_WIDTH + "s| %8d%n",
                        b.path("low_ticks").asDouble() / ticksPerUs,
                        b.path("high_ticks").asDouble() / ticksPerUs,
                        "#".repeat(bar),
                        n));
            }
        }
        return out.toString();
    }

    private static String us(double ticks, double ticksPerUs) {
        return String.format(Locale.ROOT, "%.1f us", ticks / ticksPerUs);
    }
}
