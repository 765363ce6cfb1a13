package io.vhostd.master.rpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.vhostd.rpc.RpcErrorCode;
import io.vhostd.rpc.RpcException;
import io.vhostd.rpc.RpcSpec;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

@Timeout(10)
class RpcDispatcherTest {
    private static final ObjectMapper MAPPER = new ObjectMapper();

    private final List<JsonNode> invoked = new CopyOnWriteArrayList<>();

    private RpcDispatcher dispatcher() {
        RpcMethod bdevs = params -> {
            invoked.add(params);
            String name = params.path("name").asText("");
            if (name.equals("disk9")) {
                throw new RpcException(RpcErrorCode.NO_SUCH_BDEV, "no bdev named 'disk9'");
            }
            if (name.equals("boom")) {
                throw new IllegalStateException("handler bug");
            }
            return MAPPER.createArrayNode().add(name);
        };
        RpcMethod controllers = params -> MAPPER.createArrayNode();
        RpcMethod methods = params -> MAPPER.createArrayNode().add("m");
        return new RpcDispatcher(
                RpcSpec.load(),
                Map.of("bdev_get_bdevs", bdevs, "vhost_get_controllers", controllers, "rpc_get_methods", methods),
                4);
    }

    private static String err(Object id, RpcErrorCode code) {
        return "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":" + code.code() + ",\"data\":{\"name\":\"" + code.wireName()
                + "\"}},\"id\":" + id + "}";
    }

    /** Each case: request text, expected response with error messages removed (null: no response). */
    static Stream<Arguments> cases() {
        return Stream.of(
                Arguments.of(
                        "{\"jsonrpc\":\"2.0\",\"method\":\"bdev_get_bdevs\",\"params\":{\"name\":\"d\"},\"id\":1}",
                        "{\"jsonrpc\":\"2.0\",\"result\":[\"d\"],\"id\":1}"),
                Arguments.of(
                        "{\"jsonrpc\":\"2.0\",\"method\":\"bdev_get_bdevs\",\"id\":\"s\"}",
                        "{\"jsonrpc\":\"2.0\",\"result\":[\"\"],\"id\":\"s\"}"),
                Arguments.of(
                        "{\"jsonrpc\":\"2.0\",\"method\":\"bdev_get_bdevs\",\"params\":{\"name\":\"disk9\"},\"id\":2}",
                        err(2, RpcErrorCode.NO_SUCH_BDEV)),
                Arguments.of(
                        "{\"jsonrpc\":\"2.0\",\"method\":\"bdev_get_bdevs\",\"params\":{\"name\":\"boom\"},\"id\":3}",
                        err(3, RpcErrorCode.INTERNAL_ERROR)),
                Arguments.of(
                        "{\"jsonrpc\":\"2.0\",\"method\":\"bdev_get_bdevs\",\"params\":{\"name\":7},\"id\":4}",
                        err(4, RpcErrorCode.INVALID_PARAMS)),
                Arguments.of(
                        "{\"jsonrpc\":\"2.0\",\"method\":\"bdev_get_bdevs\",\"params\":[\"d\"],\"id\":5}",
                        err(5, RpcErrorCode.INVALID_PARAMS)),
                Arguments.of(
                        "{\"jsonrpc\":\"2.0\",\"method\":\"nope_get_x\",\"id\":6}",
                        err(6, RpcErrorCode.METHOD_NOT_FOUND)),
                Arguments.of("{\"jsonrpc\":\"2.0\",\"method\":1,\"id\":7}", err(7, RpcErrorCode.INVALID_REQUEST)),
                Arguments.of("{\"jsonrpc\":\"2.0\",\"method\":1}", err(null, RpcErrorCode.INVALID_REQUEST)),
                Arguments.of("{\"method\":\"bdev_get_bdevs\",\"id\":8}", err(8, RpcErrorCode.INVALID_REQUEST)),
                Arguments.of("42", err(null, RpcErrorCode.INVALID_REQUEST)),
                Arguments.of("[]", err(null, RpcErrorCode.INVALID_REQUEST)),
                Arguments.of("[1,2,3,4,5]", err(null, RpcErrorCode.INVALID_REQUEST)),
                Arguments.of(
                        "[1,[]]",
                        "[" + err(null, RpcErrorCode.INVALID_REQUEST) + "," + err(null, RpcErrorCode.INVALID_REQUEST)
                                + "]"),
                // notifications: no response, even on error
                Arguments.of("{\"jsonrpc\":\"2.0\",\"method\":\"bdev_get_bdevs\"}", null),
                Arguments.of("{\"jsonrpc\":\"2.0\",\"method\":\"nope_get_x\"}", null),
                Arguments.of(
                        "{\"jsonrpc\":\"2.0\",\"method\":\"bdev_get_bdevs\",\"params\":{\"name\":\"boom\"}}", null),
                Arguments.of(
                        "[{\"jsonrpc\":\"2.0\",\"method\":\"bdev_get_bdevs\"},"
                                + "{\"jsonrpc\":\"2.0\",\"method\":\"vhost_get_controllers\"}]",
                        null),
                // batch: answers in order, notifications left out
                Arguments.of(
                        "[{\"jsonrpc\":\"2.0\",\"method\":\"vhost_get_controllers\",\"id\":1},"
                                + "{\"jsonrpc\":\"2.0\",\"method\":\"bdev_get_bdevs\"},"
                                + "{\"jsonrpc\":\"2.0\",\"method\":\"bdev_get_bdevs\",\"params\":{\"name\":\"x\"},\"id\":2},"
                                + "{\"foo\":\"boo\"}]",
                        "[{\"jsonrpc\":\"2.0\",\"result\":[],\"id\":1},{\"jsonrpc\":\"2.0\",\"result\":[\"x\"],\"id\":2},"
                                + err(null, RpcErrorCode.INVALID_REQUEST) + "]"));
    }

    @ParameterizedTest
    @MethodSource("cases")
    void shouldAnswerPerJsonRpcWhenRequestArrives(String request, String expected) throws Exception {
        JsonNode response = dispatcher().dispatch(MAPPER.readTree(request));
        if (expected == null) {
            assertNull(response);
        } else {
            assertEquals(MAPPER.readTree(expected), withoutMessages(response));
        }
    }

    @Test
    void shouldPassEmptyObjectWhenRequestHasNoParams() throws Exception {
        dispatcher().dispatch(MAPPER.readTree("{\"jsonrpc\":\"2.0\",\"method\":\"bdev_get_bdevs\",\"id\":1}"));
        assertEquals(List.of(MAPPER.createObjectNode()), invoked);
    }

    @Test
    void shouldNotInvokeHandlerWhenParamsBreakTheSpec() throws Exception {
        dispatcher()
                .dispatch(MAPPER.readTree(
                        "{\"jsonrpc\":\"2.0\",\"method\":\"bdev_get_bdevs\",\"params\":{\"nmae\":\"x\"},\"id\":1}"));
        assertEquals(List.of(), invoked);
    }

    private static JsonNode withoutMessages(JsonNode response) {
        JsonNode copy = response.deepCopy();
        if (copy.isArray()) {
            copy.forEach(r -> stripMessage(r));
        } else {
            stripMessage(copy);
        }
        return copy;
    }

    private static void stripMessage(JsonNode response) {
        if (response.has("error")) {
            ((com.fasterxml.jackson.databind.node.ObjectNode) response.get("error")).remove("message");
        }
    }
}
