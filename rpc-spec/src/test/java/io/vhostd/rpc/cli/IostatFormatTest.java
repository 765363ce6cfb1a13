package io.vhostd.rpc.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(10)
class IostatFormatTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    private static String counters(
            long reads,
            long bytesRead,
            long writes,
            long bytesWritten,
            long flushes,
            long unmaps,
            long bytesUnmapped,
            long readLatency,
            long writeLatency,
            long flushLatency,
            long unmapLatency,
            long ioTime,
            long weighted) {
        return "\"num_read_ops\":" + reads + ",\"bytes_read\":" + bytesRead + ",\"num_write_ops\":" + writes
                + ",\"bytes_written\":" + bytesWritten + ",\"num_flush_ops\":" + flushes + ",\"num_unmap_ops\":"
                + unmaps + ",\"bytes_unmapped\":" + bytesUnmapped + ",\"num_write_zeroes_ops\":0,"
                + "\"bytes_write_zeroes\":0,\"read_latency_ticks\":" + readLatency + ",\"write_latency_ticks\":"
                + writeLatency + ",\"flush_latency_ticks\":" + flushLatency + ",\"unmap_latency_ticks\":"
                + unmapLatency + ",\"write_zeroes_latency_ticks\":0,\"io_errors\":0,\"queue_depth\":0,"
                + "\"io_time_ticks\":" + ioTime + ",\"weighted_io_time_ticks\":" + weighted;
    }

    /** Sample 1 at t = 10 s (counters started at t = 8 s), sample 2 one second later. */
    private static final String FIRST = "{\"tick_rate\":1000000000,\"ticks\":10000000000,\"start_ticks\":8000000000,"
            + "\"bdevs\":[{\"name\":\"disk0\","
            + counters(
                    2000,
                    8192000,
                    1000,
                    4096000,
                    10,
                    4,
                    4194304,
                    200000000L,
                    300000000L,
                    5000000L,
                    4000000L,
                    1000000000L,
                    3000000000L)
            + "},{\"name\":\"null0\"," + counters(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0) + "}]}";

    private static final String SECOND = "{\"tick_rate\":1000000000,\"ticks\":11000000000,"
            + "\"start_ticks\":8000000000,\"bdevs\":[{\"name\":\"disk0\","
            + counters(
                    3000,
                    12288000,
                    1500,
                    6144000,
                    12,
                    4,
                    4194304,
                    300000000L,
                    400000000L,
                    7000000L,
                    4000000L,
                    1500000000L,
                    4000000000L)
            + "},{\"name\":\"null0\"," + counters(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0) + "}]}";

    private static JsonNode json(String s) throws Exception {
        return JSON.readTree(s);
    }

    @Test
    void shouldPrintSysstatBasicLayoutSinceStartWhenNoPreviousSample() throws Exception {
        String report = IostatFormat.format(null, json(FIRST), false, null);

        assertEquals("""
                Device             tps    kB_read/s    kB_wrtn/s    kB_dscd/s    kB_read    kB_wrtn    kB_dscd
                disk0          1502.00      4000.00      2000.00      2048.00       8000       4000       4096
                null0             0.00         0.00         0.00         0.00          0          0          0

                """, report);
    }

    @Test
    void shouldComputeEveryExtendedColumnFromTwoSamplesWhenAskedWithX() throws Exception {
        String report = IostatFormat.format(json(FIRST), json(SECOND), true, "disk0");

        // Δt 1 s: 1000 reads of 4000 kB in 100 ms total; 500 writes of 2000 kB in 100 ms; 2 flushes in 2 ms;
        // weighted 1 s → aqu-sz 1.00; io_time 0.5 s → 50 %
        assertEquals("""
                Device            r/s     rkB/s r_await rareq-sz     w/s     wkB/s w_await wareq-sz     d/s     dkB/s\
                 d_await dareq-sz     f/s f_await  aqu-sz  %util
                disk0         1000.00   4000.00    0.10     4.00  500.00   2000.00    0.20     4.00    0.00      0.00\
                    0.00     0.00    2.00    1.00    1.00  50.00

                """, report);
    }

    @Test
    void shouldCountFromZeroWhenCountersWentDown() throws Exception {
        // SECOND then FIRST (a reset in between): every counter of the later sample is taken whole
        JsonNode later = json(FIRST.replace("\"ticks\":10000000000", "\"ticks\":12000000000"));

        String report = IostatFormat.format(json(SECOND), later, false, "disk0");

        assertEquals(
                "disk0          3004.00      8000.00      4000.00      4096.00       8000       4000       4096",
                report.split("\n")[1]);
    }

    @Test
    void shouldRateEachBdevSinceItsOwnStartWhenBdevsCarryStartTicks() throws Exception {
        // disk0 was reset at t = 9 s (one second before the sample), the rest started at t = 8 s
        JsonNode perBdev = json(FIRST.replace("\"start_ticks\":8000000000,", "")
                .replace("{\"name\":\"disk0\",", "{\"name\":\"disk0\",\"start_ticks\":9000000000,")
                .replace("{\"name\":\"null0\",", "{\"name\":\"null0\",\"start_ticks\":8000000000,"));

        String report = IostatFormat.format(null, perBdev, false, "disk0");
        String sinceStart = IostatFormat.format(null, json(FIRST), false, "disk0");

        // the same counts over 1 s instead of 2 s: twice the rates
        String[] one = report.split("\n")[1].trim().split(" +");
        String[] two = sinceStart.split("\n")[1].trim().split(" +");
        assertEquals(Double.parseDouble(two[1]) * 2, Double.parseDouble(one[1]), 0.01, report);
    }

    @Test
    void shouldRefuseSinceStartReportWhenResultHasNoStartTicks() throws Exception {
        JsonNode noStart = json(FIRST.replace("\"start_ticks\":8000000000,", ""));

        assertThrows(IllegalArgumentException.class, () -> IostatFormat.format(null, noStart, false, null));
        assertThrows(IllegalArgumentException.class, () -> IostatFormat.format(json(SECOND), json(FIRST), false, null));
    }
}
