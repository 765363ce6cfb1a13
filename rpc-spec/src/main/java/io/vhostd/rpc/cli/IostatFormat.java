package io.vhostd.rpc.cli;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.Locale;

/**
 * {@code vhostctl iostat} in sysstat {@code iostat}'s layout (sysstat 12), from two {@code bdev_get_iostat} results.
 *
 * <p>Without {@code -x}: {@code Device tps kB_read/s kB_wrtn/s kB_dscd/s kB_read kB_wrtn kB_dscd}. With {@code -x}:
 * {@code Device r/s rkB/s r_await rareq-sz w/s wkB/s w_await wareq-sz d/s dkB/s d_await dareq-sz f/s f_await aqu-sz
 * %util} — sysstat 12's extended columns without the request-merge ones ({@code rrqm/s %rrqm wrqm/s %wrqm drqm/s
 * %drqm}: vhostd never merges requests). Widths as sysstat prints them: device {@code %-13s}, then each column
 * right-aligned after one space.
 *
 * <p>Mapping (as the Linux block layer counts): reads are {@code num_read_ops}; writes are {@code num_write_ops +
 * num_write_zeroes_ops} (write-zeroes is a write in /proc/diskstats); discards are {@code num_unmap_ops}; flushes
 * {@code num_flush_ops}. {@code tps} = (reads + writes + discards) / s, as sysstat. Awaits are Δlatency ticks / Δops in
 * ms; {@code aqu-sz} = Δweighted_io_time / Δt; {@code %util} = Δio_time / Δt × 100. kB = 1024 bytes.
 *
 * <p>The interval of a report is the difference of the two samples' {@code ticks}. The first report of a run is since
 * the counters started: its earlier sample is all zeroes at {@code start_ticks} (the result's CLOCK_MONOTONIC time of
 * the master's start or of the last {@code bdev_reset_iostat}); a result without {@code start_ticks} cannot give a
 * since-start report ({@link #format} then throws).
 */
public final class IostatFormat {
    private IostatFormat() {}

    private static final String[] BASIC = {"tps", "kB_read/s", "kB_wrtn/s", "kB_dscd/s", "kB_read", "kB_wrtn", "kB_dscd"
    };
    private static final int[] BASIC_WIDTH = {8, 12, 12, 12, 10, 10, 10};
    private static final String[] EXTENDED = {
        "r/s",
        "rkB/s",
        "r_await",
        "rareq-sz",
        "w/s",
        "wkB/s",
        "w_await",
        "wareq-sz",
        "d/s",
        "dkB/s",
        "d_await",
        "dareq-sz",
        "f/s",
        "f_await",
        "aqu-sz",
        "%util"
    };
    private static final int[] EXTENDED_WIDTH = {7, 9, 7, 8, 7, 9, 7, 8, 7, 9, 7, 8, 7, 7, 7, 6};

    /**
     * One report: a header line, one line per bdev of {@code current} (only {@code device} when not null), and an
     * empty line.
     *
     * @param previous the earlier {@code bdev_get_iostat} result, or null for the report since the counters started
     * @param current the later result
     * @param extended {@code -x}
     * @param device only this bdev, or null for all
     * @throws IllegalArgumentException if the samples are not in time order, or {@code previous} is null and {@code
     *     current} has no {@code start_ticks}
     */
    public static String format(JsonNode previous, JsonNode current, boolean extended, String device) {
        long rate = current.path("tick_rate").asLong(1_000_000_000L);
        long endTicks = current.path("ticks").asLong();
        StringBuilder out = new StringBuilder();
        out.append(header(extended)).append('\n');
        for (JsonNode bdev : current.path("bdevs")) {
            String name = bdev.path("name").asText();
            if (device != null && !device.equals(name)) {
                continue;
            }
            double seconds = (endTicks - startTicks(previous, current, bdev)) / (double) rate;
            JsonNode before = previous == null ? null : find(previous, name);
            Delta d = new Delta(before, bdev);
            out.append(String.format(Locale.ROOT, "%-13s", name));
            double[] values = extended ? extendedValues(d, seconds, rate) : basicValues(d, seconds);
            int[] widths = extended ? EXTENDED_WIDTH : BASIC_WIDTH;
            for (int i = 0; i < values.length; i++) {
                boolean integer = !extended && i >= 4;
                out.append(' ')
                        .append(
                                integer
                                        ? String.format(Locale.ROOT, "%" + widths[i] + "d", (long) values[i])
                                        : String.format(Locale.ROOT, "%" + widths[i] + ".2f", values[i]));
            }
            out.append('\n');
        }
        return out.append('\n').toString();
    }

    /**
     * Where a bdev's interval starts: the earlier sample's {@code ticks}, else when its counters started (the bdev's
     * {@code start_ticks}, else the result's).
     */
    private static long startTicks(JsonNode previous, JsonNode current, JsonNode bdev) {
        long endTicks = current.path("ticks").asLong();
        long startTicks;
        if (previous != null) {
            startTicks = previous.path("ticks").asLong();
        } else if (bdev.hasNonNull("start_ticks")) {
            startTicks = bdev.get("start_ticks").asLong();
        } else if (current.hasNonNull("start_ticks")) {
            startTicks = current.get("start_ticks").asLong();
        } else {
            throw new IllegalArgumentException("bdev_get_iostat gave no start_ticks: no since-start report");
        }
        if (endTicks <= startTicks) {
            throw new IllegalArgumentException("samples not in time order: ticks " + startTicks + " then " + endTicks);
        }
        return startTicks;
    }

    /** The header line: {@code Device} then every column name right-aligned to its width. */
    public static String header(boolean extended) {
        String[] names = extended ? EXTENDED : BASIC;
        int[] widths = extended ? EXTENDED_WIDTH : BASIC_WIDTH;
        StringBuilder line = new StringBuilder(String.format(Locale.ROOT, "%-13s", "Device"));
        for (int i = 0; i < names.length; i++) {
            line.append(' ').append(String.format(Locale.ROOT, "%" + widths[i] + "s", names[i]));
        }
        return line.toString();
    }

    private static JsonNode find(JsonNode result, String name) {
        for (JsonNode b : result.path("bdevs")) {
            if (name.equals(b.path("name").asText())) {
                return b;
            }
        }
        return null;
    }

    private static double[] basicValues(Delta d, double seconds) {
        double readKb = d.of("bytes_read") / 1024.0;
        double writeKb = d.writeBytes() / 1024.0;
        double discardKb = d.of("bytes_unmapped") / 1024.0;
        return new double[] {
            (d.of("num_read_ops") + d.writeOps() + d.of("num_unmap_ops")) / seconds,
            readKb / seconds,
            writeKb / seconds,
            discardKb / seconds,
            Math.floor(readKb),
            Math.floor(writeKb),
            Math.floor(discardKb)
        };
    }

    private static double[] extendedValues(Delta d, double seconds, long rate) {
        long reads = d.of("num_read_ops");
        long writes = d.writeOps();
        long discards = d.of("num_unmap_ops");
        long flushes = d.of("num_flush_ops");
        double ticksPerMs = rate / 1000.0;
        return new double[] {
            reads / seconds,
            d.of("bytes_read") / 1024.0 / seconds,
            ratio(d.of("read_latency_ticks") / ticksPerMs, reads),
            ratio(d.of("bytes_read") / 1024.0, reads),
            writes / seconds,
            d.writeBytes() / 1024.0 / seconds,
            ratio((d.of("write_latency_ticks") + d.of("write_zeroes_latency_ticks")) / ticksPerMs, writes),
            ratio(d.writeBytes() / 1024.0, writes),
            discards / seconds,
            d.of("bytes_unmapped") / 1024.0 / seconds,
            ratio(d.of("unmap_latency_ticks") / ticksPerMs, discards),
            ratio(d.of("bytes_unmapped") / 1024.0, discards),
            flushes / seconds,
            ratio(d.of("flush_latency_ticks") / ticksPerMs, flushes),
            d.of("weighted_io_time_ticks") / (seconds * rate),
            Math.min(100.0, d.of("io_time_ticks") / (seconds * rate) * 100.0)
        };
    }

    private static double ratio(double value, long count) {
        return count == 0 ? 0.0 : value / count;
    }

    /** Counters the layouts read; if any went down between the samples, the counters were reset in between. */
    private static final String[] COUNTERS = {
        "num_read_ops",
        "bytes_read",
        "num_write_ops",
        "bytes_written",
        "num_flush_ops",
        "num_unmap_ops",
        "bytes_unmapped",
        "num_write_zeroes_ops",
        "bytes_write_zeroes",
        "read_latency_ticks",
        "write_latency_ticks",
        "flush_latency_ticks",
        "unmap_latency_ticks",
        "write_zeroes_latency_ticks",
        "io_time_ticks",
        "weighted_io_time_ticks"
    };

    /**
     * Counter differences of one bdev. After a {@code bdev_reset_iostat} between the samples (some counter went
     * down) every counter of the later sample counts from zero.
     */
    private record Delta(JsonNode before, JsonNode after) {
        Delta {
            if (before != null) {
                for (String c : COUNTERS) {
                    if (after.path(c).asLong() < before.path(c).asLong()) {
                        before = null;
                        break;
                    }
                }
            }
        }

        long of(String counter) {
            return after.path(counter).asLong()
                    - (before == null ? 0 : before.path(counter).asLong());
        }

        long writeOps() {
            return of("num_write_ops") + of("num_write_zeroes_ops");
        }

        long writeBytes() {
            return of("bytes_written") + of("bytes_write_zeroes");
        }
    }
}
