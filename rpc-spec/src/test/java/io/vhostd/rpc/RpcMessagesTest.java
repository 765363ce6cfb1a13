package io.vhostd.rpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.IntNode;
import com.fasterxml.jackson.databind.node.NullNode;
import com.fasterxml.jackson.databind.node.TextNode;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

@Timeout(10)
class RpcMessagesTest {
    private static JsonNode json(String text) throws Exception {
        return Json.MAPPER.readTree(text);
    }

    @Test
    void shouldRoundTripRequestWhenSerialisedAndRead() throws Exception {
        RpcRequest request = RpcRequest.of(IntNode.valueOf(7), "bdev_get_bdevs", json("{\"name\":\"disk0\"}"));
        JsonNode wire = json(Json.MAPPER.writeValueAsString(request.toJson()));
        assertEquals(
                json("{\"jsonrpc\":\"2.0\",\"method\":\"bdev_get_bdevs\",\"params\":{\"name\":\"disk0\"},\"id\":7}"),
                wire);
        assertEquals(request, RpcRequest.fromJson(wire));
        assertFalse(request.isNotification());
    }

    @Test
    void shouldOmitIdAndParamsWhenNotificationWithoutParams() throws Exception {
        RpcRequest request = RpcRequest.notification("rpc_get_methods", null);
        assertEquals(json("{\"jsonrpc\":\"2.0\",\"method\":\"rpc_get_methods\"}"), request.toJson());
        RpcRequest read = RpcRequest.fromJson(request.toJson());
        assertTrue(read.isNotification());
        assertNull(read.params());
    }

    @Test
    void shouldKeepExplicitNullIdWhenRead() throws Exception {
        RpcRequest read = RpcRequest.fromJson(json("{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":null}"));
        assertFalse(read.isNotification());
        assertEquals(NullNode.getInstance(), read.id());
    }

    @Test
    void shouldTreatNullParamsAsAbsentWhenRead() throws Exception {
        assertNull(RpcRequest.fromJson(json("{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":null,\"id\":1}"))
                .params());
    }

    @ParameterizedTest
    @ValueSource(
            strings = {
                "[]",
                "42",
                "\"text\"",
                "{}",
                "{\"method\":\"m\",\"id\":1}",
                "{\"jsonrpc\":\"1.0\",\"method\":\"m\",\"id\":1}",
                "{\"jsonrpc\":2.0,\"method\":\"m\",\"id\":1}",
                "{\"jsonrpc\":\"2.0\",\"id\":1}",
                "{\"jsonrpc\":\"2.0\",\"method\":7,\"id\":1}",
                "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":\"x\",\"id\":1}",
                "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":3,\"id\":1}",
                "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":{}}",
                "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":[1]}",
                "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1.5}",
                "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":true}",
                "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1,\"extra\":0}"
            })
    void shouldRejectWithInvalidRequestWhenRequestMalformed(String text) throws Exception {
        RpcException e = assertThrows(RpcException.class, () -> RpcRequest.fromJson(json(text)));
        assertEquals(RpcErrorCode.INVALID_REQUEST.code(), e.error().code());
        assertEquals("invalid_request", e.error().name());
    }

    @Test
    void shouldEchoOnlyValidIdsWhenAnsweringUnreadableRequest() throws Exception {
        assertEquals(IntNode.valueOf(3), RpcRequest.responseIdOf(json("{\"id\":3,\"method\":5}")));
        assertEquals(TextNode.valueOf("a"), RpcRequest.responseIdOf(json("{\"id\":\"a\"}")));
        assertEquals(NullNode.getInstance(), RpcRequest.responseIdOf(json("{\"id\":{}}")));
        assertEquals(NullNode.getInstance(), RpcRequest.responseIdOf(json("[1]")));
        assertEquals(NullNode.getInstance(), RpcRequest.responseIdOf(null));
    }

    @Test
    void shouldRoundTripSuccessResponseWhenSerialisedAndRead() throws Exception {
        RpcResponse response = RpcResponse.success(TextNode.valueOf("x"), json("[{\"name\":\"disk0\"}]"));
        JsonNode wire = response.toJson();
        assertEquals(json("{\"jsonrpc\":\"2.0\",\"result\":[{\"name\":\"disk0\"}],\"id\":\"x\"}"), wire);
        assertEquals(response, RpcResponse.fromJson(wire));
        assertFalse(response.isError());
    }

    @Test
    void shouldSendNullResultWhenHandlerReturnsNothing() throws Exception {
        assertEquals(
                json("{\"jsonrpc\":\"2.0\",\"result\":null,\"id\":1}"),
                RpcResponse.success(IntNode.valueOf(1), null).toJson());
    }

    @Test
    void shouldRoundTripErrorResponseWithNameWhenSerialisedAndRead() throws Exception {
        RpcResponse response = RpcResponse.failure(
                IntNode.valueOf(4), RpcError.of(RpcErrorCode.NO_SUCH_BDEV, "no bdev named 'disk9'"));
        JsonNode wire = response.toJson();
        assertEquals(
                json("{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32001,\"message\":\"no bdev named 'disk9'\","
                        + "\"data\":{\"name\":\"no_such_bdev\"}},\"id\":4}"),
                wire);
        RpcResponse read = RpcResponse.fromJson(wire);
        assertEquals(response, read);
        assertEquals("no_such_bdev", read.error().name());
    }

    @Test
    void shouldFallBackToCodeNameWhenErrorHasNoData() throws Exception {
        RpcError error = RpcError.fromJson(json("{\"code\":-32601,\"message\":\"nope\"}"));
        assertEquals("method_not_found", error.name());
        assertEquals(
                "error",
                RpcError.fromJson(json("{\"code\":5,\"message\":\"odd\"}")).name());
        assertFalse(error.toJson().has("data"));
    }

    @Test
    void shouldKeepExtraDataAndAddNameWhenErrorBuiltWithData() throws Exception {
        RpcError error = RpcError.of(RpcErrorCode.BDEV_BUSY, "busy", (com.fasterxml.jackson.databind.node.ObjectNode)
                json("{\"controller\":\"vhost-blk0\"}"));
        assertEquals(json("{\"controller\":\"vhost-blk0\",\"name\":\"bdev_busy\"}"), error.data());
    }

    @ParameterizedTest
    @ValueSource(
            strings = {
                "[]",
                "{\"jsonrpc\":\"2.0\",\"id\":1}",
                "{\"jsonrpc\":\"2.0\",\"result\":1}",
                "{\"jsonrpc\":\"1.0\",\"result\":1,\"id\":1}",
                "{\"jsonrpc\":\"2.0\",\"result\":1,\"error\":{\"code\":1,\"message\":\"m\"},\"id\":1}",
                "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":\"x\",\"message\":\"m\"},\"id\":1}",
                "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":1},\"id\":1}",
                "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":99999999999,\"message\":\"m\"},\"id\":1}",
                "{\"jsonrpc\":\"2.0\",\"error\":7,\"id\":1}",
                "{\"jsonrpc\":\"2.0\",\"result\":1,\"id\":{}}",
                "{\"jsonrpc\":\"2.0\",\"result\":1,\"id\":1,\"more\":2}"
            })
    void shouldRejectWithProtocolErrorWhenResponseMalformed(String text) {
        assertThrows(RpcProtocolException.class, () -> RpcResponse.fromJson(json(text)));
    }

    @Test
    void shouldDescribeErrorWhenExceptionPrinted() {
        RpcException e = new RpcException(RpcErrorCode.NAME_IN_USE, "bdev 'disk0' exists");
        assertEquals("name_in_use (-32003): bdev 'disk0' exists", e.getMessage());
    }
}
