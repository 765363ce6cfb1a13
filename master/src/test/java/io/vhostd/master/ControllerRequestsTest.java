package io.vhostd.master;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.vhostd.master.config.ControllerConfig;
import io.vhostd.rpc.RpcException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

@Timeout(10)
class ControllerRequestsTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @Test
    void shouldApplyDefaultsWhenOnlyNameAndBdevAreGiven() throws Exception {
        ControllerConfig c = ControllerRequests.fromParams(
                JSON.readTree("{\"ctrlr\":\"a-very-long-controller-name\",\"dev_name\":\"d\"}"), "/run/vhostd", true);

        assertEquals(
                new ControllerConfig(
                        "a-very-long-controller-name",
                        "vhost-user-blk",
                        "d",
                        "/run/vhostd/a-very-long-controller-name.sock",
                        1,
                        1024,
                        "a-very-long-controll",
                        true),
                c);
    }

    @Test
    void shouldReadBackWhatItRecordsWhenRoundTripped() {
        ControllerConfig c = new ControllerConfig("vb1", "vhost-user-blk", "d", "/tmp/vb1.sock", 4, 256, "SN1", false);
        ObjectNode record = ControllerRequests.toRecord(c);
        record.put("seq", 7);

        assertEquals(c, ControllerRequests.fromRecord(record, "/run/vhostd", false));
    }

    @ParameterizedTest
    @CsvSource(
            delimiter = '|',
            value = {
                "{\"name\":\"vb1\",\"type\":\"vhost-user-blk\",\"bdev\":\"d\",\"socket\":\"/s\",\"num_queues\":1,"
                        + "\"queue_size_max\":1024,\"serial\":\"s\",\"read_only\":false,\"extra\":1}|extra",
                "{\"name\":\"vb1\",\"type\":\"vhost-user-scsi\"}|type",
                "{\"name\":\"vb1\",\"type\":\"vhost-user-blk\",\"bdev\":\"d\",\"socket\":\"/s\",\"num_queues\":0,"
                        + "\"queue_size_max\":1024,\"serial\":\"s\",\"read_only\":false}|num_queues",
                "{\"name\":\"vb1\",\"type\":\"vhost-user-blk\",\"bdev\":\"d\",\"socket\":\"/s\",\"num_queues\":1,"
                        + "\"queue_size_max\":1000,\"serial\":\"s\",\"read_only\":false}|queue_size_max",
                "{\"name\":\"vb1\",\"type\":\"vhost-user-blk\",\"bdev\":\"d\",\"socket\":\"/s\",\"num_queues\":1,"
                        + "\"queue_size_max\":1024,\"serial\":\"s\",\"read_only\":\"no\"}|read_only",
                "[1]|object"
            })
    void shouldRefuseRecordNamingTheFieldWhenItIsBad(String record, String field) throws Exception {
        IllegalArgumentException e = assertThrows(
                IllegalArgumentException.class,
                () -> ControllerRequests.fromRecord(JSON.readTree(record), "/run/vhostd", false));

        assertTrue(e.getMessage().contains(field), e.getMessage());
    }

    @Test
    void shouldNameTheRpcParamWhenParamsAreBad() throws Exception {
        RpcException e = assertThrows(
                RpcException.class,
                () -> ControllerRequests.fromParams(
                        JSON.readTree("{\"ctrlr\":\"x\",\"dev_name\":\"d\",\"readonly\":false}"), "/run", true));

        assertEquals("invalid_params", e.error().name());
        assertTrue(
                e.error().message().startsWith("invalid params: readonly: "),
                e.error().message());
    }
}
