package io.vhostd.rpc.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(10)
class TraceFormatTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @Test
    void shouldPrintOneBlkparseLinePerTimestampWhenDumped() throws Exception {
        String result = """
                {"events":[
                  {"seq":17,"controller":"vhost-blk0","queue":1,"op":"read","offset_bytes":1048576,
                   "length_bytes":4096,"status":"ok","fetch_ns":5000000000,"submit_ns":5000000400,
                   "device_submit_ns":5000001000,"device_complete_ns":5000081000,"used_ns":5000081500,
                   "notify_ns":5000082000},
                  {"seq":18,"controller":"vhost-blk0","queue":0,"op":"write_zeroes","offset_bytes":0,
                   "length_bytes":512,"status":"unsupp","fetch_ns":6500000000,"submit_ns":0,
                   "device_submit_ns":0,"device_complete_ns":0,"used_ns":6500000300,"notify_ns":0}],
                 "dropped":3}
                """;

        assertEquals("""
                CTRLR         Q      SEQ          TIME_S A  RWBS OFFSET + LEN       STATUS
                vhost-blk0    1       17     0.000000000 Q     R 2048 + 8           [ok]
                vhost-blk0    1       17     0.000000400 I     R 2048 + 8           [ok]
                vhost-blk0    1       17     0.000001000 D     R 2048 + 8           [ok]
                vhost-blk0    1       17     0.000081000 C     R 2048 + 8           [ok]
                vhost-blk0    1       17     0.000081500 U     R 2048 + 8           [ok]
                vhost-blk0    1       17     0.000082000 N     R 2048 + 8           [ok]
                vhost-blk0    0       18     1.500000000 Q    WZ 0 + 1              [unsupp]
                vhost-blk0    0       18     1.500000300 U    WZ 0 + 1              [unsupp]
                dropped: 3
                """, TraceFormat.format(JSON.readTree(result)));
    }

    @Test
    void shouldPrintOnlyTheHeaderWhenNoEvents() throws Exception {
        assertEquals(TraceFormat.header() + "\n", TraceFormat.format(JSON.readTree("{\"events\":[],\"dropped\":0}")));
    }
}
