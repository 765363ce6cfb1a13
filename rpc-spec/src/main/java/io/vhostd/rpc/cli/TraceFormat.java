package io.vhostd.rpc.cli;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.Locale;

/**
 * {@code vhostctl trace dump} in a blkparse-like layout, from a {@code trace_get_events} result. One line per
 * timestamp an event carries (a timestamp of 0 was not taken and prints nothing), in the result's order (oldest event
 * first, its actions in request order):
 *
 * <pre>
 * CTRLR        Q      SEQ         TIME_S A  RWBS OFFSET + LEN     STATUS
 * vhost-blk0   0       17    0.000000000 Q     R 2048 + 8         [ok]
 * </pre>
 *
 * <p>Columns: controller; virtqueue index; the event's sequence number; seconds since the first timestamp of the dump
 * ({@code %5d.%09d} as blkparse); the action; RWBS; start sector + sectors (512-byte units, as blkparse); the request's
 * virtio-blk status ({@code ok}, {@code ioerr}, {@code unsupp}). Actions, after blktrace's letters where the meaning
 * matches: {@code Q} fetched from the guest's avail ring (queued), {@code I} published to the VirtNvme submission
 * queue (inserted), {@code D} submitted to io_uring (issued to the device), {@code C} device completion, {@code U}
 * used-ring publish (ours), {@code N} guest notified or notification suppressed (ours). RWBS: {@code R} read, {@code
 * W} write, {@code F} flush, {@code D} discard (unmap), {@code WZ} write zeroes (ours; blktrace has no letter).
 */
public final class TraceFormat {
    private TraceFormat() {}

    private static final String[][] ACTIONS = {
        {"fetch_ns", "Q"},
        {"submit_ns", "I"},
        {"device_submit_ns", "D"},
        {"device_complete_ns", "C"},
        {"used_ns", "U"},
        {"notify_ns", "N"}
    };

    /** The header line. */
    public static String header() {
        return String.format(
                Locale.ROOT,
                "%-12s %2s %8s %15s %s %5s %-18s %s",
                "CTRLR",
                "Q",
                "SEQ",
                "TIME_S",
                "A",
                "RWBS",
                "OFFSET + LEN",
                "STATUS");
    }

    /** Header, lines, and a last line {@code dropped: N} when the ring overwrote events before they were read. */
    public static String format(JsonNode result) {
        long originNs = Long.MAX_VALUE;
        for (JsonNode e : result.path("events")) {
            for (String[] a : ACTIONS) {
                long t = e.path(a[0]).asLong();
                if (t != 0) {
                    originNs = Math.min(originNs, t);
                }
            }
        }
        StringBuilder out = new StringBuilder(header()).append('\n');
        for (JsonNode e : result.path("events")) {
            String rwbs = rwbs(e.path("op").asText());
            String range = (e.path("offset_bytes").asLong() / 512) + " + "
                    + (e.path("length_bytes").asLong() / 512);
            for (String[] a : ACTIONS) {
                long t = e.path(a[0]).asLong();
                if (t == 0) {
                    continue;
                }
                long rel = t - originNs;
                out.append(String.format(
                                Locale.ROOT,
                                "%-12s %2d %8d %5d.%09d %s %5s %-18s [%s]",
                                e.path("controller").asText(),
                                e.path("queue").asInt(),
                                e.path("seq").asLong(),
                                rel / 1_000_000_000L,
                                rel % 1_000_000_000L,
                                a[1],
                                rwbs,
                                range,
                                e.path("status").asText("?")))
                        .append('\n');
            }
        }
        long dropped = result.path("dropped").asLong();
        if (dropped > 0) {
            out.append("dropped: ").append(dropped).append('\n');
        }
        return out.toString();
    }

    /** blktrace's RWBS letters for a trace op name. */
    static String rwbs(String op) {
        return switch (op) {
            case "read" -> "R";
            case "write" -> "W";
            case "flush" -> "F";
            case "unmap" -> "D";
            case "write_zeroes" -> "WZ";
            default -> "N";
        };
    }
}
