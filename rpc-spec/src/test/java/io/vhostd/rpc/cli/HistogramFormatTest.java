package io.vhostd.rpc.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(10)
class HistogramFormatTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @Test
    void shouldDrawScaledBarsWithPercentilesWhenEnabled() throws Exception {
        String result = """
                {"name":"disk0","tick_rate":1000000000,"enabled":true,"histograms":[
                  {"segment":"device","op":"read","count":101,"sum_ticks":10100000,"min_ticks":40000,
                   "max_ticks":900000,"percentiles":{"p50":81920,"p90":102400,"p99":204800,"p999":819200},
                   "buckets":[{"low_ticks":40000,"high_ticks":48000,"count":100},
                              {"low_ticks":800000,"high_ticks":900000,"count":1}]}]}
                """;

        assertEquals(
                "bdev disk0  segment device  op read: 101 requests, mean 100.0 us, min 40.0 us, max 900.0 us\n"
                        + "  p50 81.9 us  p90 102.4 us  p99 204.8 us  p99.9 819.2 us\n"
                        + "        40.0 -       48.0 us |" + "#".repeat(50) + "|      100\n"
                        + "       800.0 -      900.0 us |#" + " ".repeat(49) + "|        1\n",
                HistogramFormat.format(JSON.readTree(result)));
    }

    @Test
    void shouldSayHowToEnableWhenDisabled() throws Exception {
        String text = HistogramFormat.format(
                JSON.readTree("{\"name\":\"disk0\",\"tick_rate\":1000000000,\"enabled\":false,\"histograms\":[]}"));

        assertEquals(
                "bdev disk0: histograms disabled (vhostctl rpc bdev_enable_histogram"
                        + " '{\"name\":\"disk0\",\"enable\":true}')\n",
                text);
    }
}
